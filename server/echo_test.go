package server_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// echoSizes are the payload sizes around every frame-length encoding boundary
// (RFC 6455 §5.2: 7-bit up to 125, 16-bit up to 65535, 64-bit beyond), up to the default
// message limit.
var echoSizes = []int{0, 1, 125, 126, 65535, 65536, 1<<20 - 16, 1 << 20}

// TestEchoGorilla echoes text and binary messages of every size through a real client
// library, each sent as a single frame and through a small write buffer that makes
// gorilla fragment it.
func TestEchoGorilla(t *testing.T) {
	ts := servertest.Start(t, server.Options{})
	for _, tc := range []struct {
		name        string
		writeBuffer int // gorilla's write buffer; a message larger than it is fragmented
		chunk       int // bytes per Write on the NextWriter; 0 writes the message at once
	}{
		// gorilla sends a message as one frame only if it fits its write buffer (4 KiB by
		// default); 2 MiB makes every size here a single frame.
		{name: "whole", writeBuffer: 2 << 20},
		{name: "fragmented", writeBuffer: 512, chunk: 300},
	} {
		d := &websocket.Dialer{HandshakeTimeout: 10 * time.Second, WriteBufferSize: tc.writeBuffer}
		for _, op := range []int{websocket.TextMessage, websocket.BinaryMessage} {
			for _, size := range echoSizes {
				t.Run(fmt.Sprintf("%s/%s/%d", tc.name, opName(op), size), func(t *testing.T) {
					c, _, err := d.Dial(ts.URL, nil)
					if err != nil {
						t.Fatalf("dial: %v", err)
					}
					defer c.Close()
					payload := binaryPayload(size)
					if op == websocket.TextMessage {
						payload = textPayload(size)
					}
					_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
					w, err := c.NextWriter(op)
					if err != nil {
						t.Fatalf("NextWriter: %v", err)
					}
					chunk := tc.chunk
					if chunk == 0 {
						chunk = max(size, 1)
					}
					for p := payload; len(p) > 0; {
						n := min(chunk, len(p))
						if _, err := w.Write(p[:n]); err != nil {
							t.Fatalf("Write: %v", err)
						}
						p = p[n:]
					}
					if err := w.Close(); err != nil {
						t.Fatalf("Close writer: %v", err)
					}
					_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
					gotOp, got, err := c.ReadMessage()
					if err != nil {
						t.Fatalf("read echo: %v", err)
					}
					if gotOp != op || !bytes.Equal(got, payload) {
						t.Fatalf("echo = %s, %d bytes; want %s, %d bytes (first difference at %d)",
							opName(gotOp), len(got), opName(op), len(payload), firstDiff(got, payload))
					}
				})
			}
		}
	}
}

func opName(op int) string {
	switch op {
	case websocket.TextMessage:
		return "text"
	case websocket.BinaryMessage:
		return "binary"
	}
	return fmt.Sprintf("op%d", op)
}

// TestEchoRawFragments sends each message as three fragments cut at arbitrary byte offsets
// (inside a UTF-8 rune for text), with a ping between the first two, as RFC 6455 §5.4
// allows. The pong must come back at once and the message must come back whole.
func TestEchoRawFragments(t *testing.T) {
	ts := servertest.Start(t, server.Options{})
	for _, op := range []codec.OpCode{codec.OpText, codec.OpBinary} {
		for _, size := range echoSizes {
			t.Run(fmt.Sprintf("%s/%d", opName(int(op)), size), func(t *testing.T) {
				rc := upgradeRaw(t, ts)
				payload := binaryPayload(size)
				if op == codec.OpText {
					payload = textPayload(size)
				}
				cut1, cut2 := size/3+1, 2*size/3+2
				cut1, cut2 = min(cut1, size), min(cut2, size)
				pingData := []byte("mid-message")
				var wire []byte
				wire = append(wire, clientFrame(op, false, payload[:cut1])...)
				wire = append(wire, clientFrame(codec.OpPing, true, pingData)...)
				wire = append(wire, clientFrame(codec.OpContinuation, false, payload[cut1:cut2])...)
				wire = append(wire, clientFrame(codec.OpContinuation, true, payload[cut2:])...)
				rc.write(t, wire)

				f, err := rc.readFrame(10 * time.Second)
				if err != nil {
					t.Fatalf("reading the pong: %v", err)
				}
				if f.Header.OpCode != ws.OpPong || !bytes.Equal(f.Payload, pingData) {
					t.Fatalf("first frame = %v %q, want the pong %q", f.Header.OpCode, f.Payload, pingData)
				}
				gotOp, got, err := rc.readMessage(10*time.Second, nil)
				if err != nil {
					t.Fatalf("reading the echo: %v", err)
				}
				if gotOp != op || !bytes.Equal(got, payload) {
					t.Fatalf("echo = %v, %d bytes; want %v, %d bytes (first difference at %d)",
						gotOp, len(got), op, len(payload), firstDiff(got, payload))
				}
			})
		}
	}
}

// TestEchoTrickled writes a message one small piece at a time, so that the server sees
// its frame header and payload across many reads; no byte may be lost in between.
func TestEchoTrickled(t *testing.T) {
	ts := servertest.Start(t, server.Options{})
	for _, tc := range []struct {
		name  string
		size  int
		piece int
		pause time.Duration
	}{
		{name: "header byte by byte", size: 200, piece: 1, pause: time.Millisecond},
		{name: "16-bit length in pieces", size: 4000, piece: 333, pause: 2 * time.Millisecond},
		{name: "64-bit length in pieces", size: 200000, piece: 16 << 10, pause: 2 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := upgradeRaw(t, ts)
			payload := binaryPayload(tc.size)
			wire := clientFrame(codec.OpBinary, true, payload)
			for p := wire; len(p) > 0; {
				n := min(tc.piece, len(p))
				rc.write(t, p[:n])
				p = p[n:]
				time.Sleep(tc.pause) // pacing the writes, not waiting for a condition
			}
			op, got, err := rc.readMessage(10*time.Second, nil)
			if err != nil {
				t.Fatalf("reading the echo: %v", err)
			}
			if op != ws.OpBinary || !bytes.Equal(got, payload) {
				t.Fatalf("echo = %v, %d bytes; want binary, %d bytes (first difference at %d)",
					op, len(got), len(payload), firstDiff(got, payload))
			}
		})
	}
}

// TestPipelinedFirstFrame writes the upgrade request and the first frame in one write:
// the bytes after the request head belong to the WebSocket and must not be dropped.
func TestPipelinedFirstFrame(t *testing.T) {
	ts := servertest.Start(t, server.Options{})
	for _, tc := range []struct {
		name   string
		frames [][]byte
		split  int // when > 0, only this many frame bytes go with the request; the rest follow
		want   []string
	}{
		{name: "one frame", frames: [][]byte{clientFrame(codec.OpText, true, []byte("first"))}, want: []string{"first"}},
		{name: "two frames", frames: [][]byte{
			clientFrame(codec.OpText, true, []byte("first")),
			clientFrame(codec.OpText, true, []byte("second")),
		}, want: []string{"first", "second"}},
		{name: "frame cut after the head", frames: [][]byte{
			clientFrame(codec.OpText, true, bytes.Repeat([]byte("z"), 300)),
		}, split: 10, want: []string{string(bytes.Repeat([]byte("z"), 300))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, ts)
			wire := []byte(upgradeRequest(ts.Addr))
			for _, f := range tc.frames {
				wire = append(wire, f...)
			}
			cut := len(wire)
			if tc.split > 0 {
				cut = len(upgradeRequest(ts.Addr)) + tc.split
			}
			rc.write(t, wire[:cut])
			// The 101 proves the server has read the head and the partial frame behind it.
			rc.readUpgrade(t)
			if cut < len(wire) {
				rc.write(t, wire[cut:])
			}
			for _, want := range tc.want {
				op, got, err := rc.readMessage(10*time.Second, nil)
				if err != nil {
					t.Fatalf("reading echo %q: %v", want, err)
				}
				if op != ws.OpText || string(got) != want {
					t.Fatalf("echo = %v %q, want text %q", op, got, want)
				}
			}
		})
	}
}
