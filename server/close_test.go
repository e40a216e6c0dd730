package server_test

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// TestPeerClose checks the client-initiated close handshake (RFC 6455 §5.5.1, §7.1.1):
// the server echoes the client's code, then closes the TCP connection first, and counts
// the close under the code's label.
func TestPeerClose(t *testing.T) {
	ts := servertest.Start(t, server.Options{})
	for _, tc := range []struct {
		name      string
		payload   []byte          // the client's close payload
		wantCode  codec.CloseCode // code of the server's echo; 1005 means an empty payload
		wantLabel string          // ws_close_total label that must increment
	}{
		{name: "1000 with reason", payload: closePayload(1000, "bye"), wantCode: 1000, wantLabel: "1000"},
		{name: "1001", payload: closePayload(1001, "tab closed"), wantCode: 1001, wantLabel: "1001"},
		// Application codes are the client's choice; they share one label so a client
		// cannot create unbounded series (server/metrics.go, closeLabels).
		{name: "3001 registered range", payload: closePayload(3001, "app"), wantCode: 3001, wantLabel: "other"},
		{name: "4321 private range", payload: closePayload(4321, "ünïcode reason"), wantCode: 4321, wantLabel: "other"},
		// A client's 4029 or 4000 is its own application's code, not the server's rate
		// limit or slow-consumer close: it must not land in those series.
		{name: "4029 chosen by the client", payload: closePayload(4029, ""), wantCode: 4029, wantLabel: "other"},
		{name: "4000 chosen by the client", payload: closePayload(4000, ""), wantCode: 4000, wantLabel: "other"},
		{name: "no status", payload: nil, wantCode: codec.CloseNoStatus, wantLabel: "1005"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := ts.Metrics(t)
			rc := upgradeRaw(t, ts)
			// A message first, so the close follows real traffic.
			rc.write(t, clientFrame(codec.OpText, true, []byte("before close")))
			if _, got, err := rc.readMessage(10*time.Second, nil); err != nil || string(got) != "before close" {
				t.Fatalf("echo before close = %q, %v", got, err)
			}
			rc.write(t, clientFrame(codec.OpClose, true, tc.payload))
			res, err := rc.readClose(slack)
			if err != nil {
				t.Fatalf("after the client's close: %v", err)
			}
			if !res.gotClose {
				t.Fatalf("no close frame before EOF, want the echo of %d", tc.wantCode)
			}
			if res.code != tc.wantCode {
				t.Errorf("echoed close code = %d, want %d", res.code, tc.wantCode)
			}
			if !res.eof {
				t.Errorf("server did not close the TCP connection after the close handshake")
			}
			ts.WaitMetric(t, closeSeries(tc.wantLabel), before[closeSeries(tc.wantLabel)]+1)
			ts.WaitMetric(t, "ws_connections_closed_total", before["ws_connections_closed_total"]+1)
			ts.WaitMetric(t, "ws_connections_active", 0)
		})
	}
}

// TestProtocolViolations checks that each kind of bad input after the upgrade gets the
// close code RFC 6455 assigns, then the end of the TCP connection, and nothing else
// changes for other clients.
func TestProtocolViolations(t *testing.T) {
	const limit = 1024
	ts := servertest.Start(t, server.Options{MaxMessageBytes: limit})
	frame := func(op codec.OpCode, fin bool, p []byte) []byte { return clientFrame(op, fin, p) }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, tc := range []struct {
		name     string
		wire     []byte
		wantCode codec.CloseCode
	}{
		{
			name:     "unmasked frame",
			wire:     codec.AppendFrame(nil, codec.OpText, true, []byte("hello")),
			wantCode: codec.CloseProtocolError,
		},
		{
			name:     "reserved opcode",
			wire:     frame(0x3, true, []byte("x")),
			wantCode: codec.CloseProtocolError,
		},
		{
			name:     "RSV1 without an extension",
			wire:     func() []byte { b := frame(codec.OpText, true, []byte("x")); b[0] |= 0x40; return b }(),
			wantCode: codec.CloseProtocolError,
		},
		{
			name:     "fragmented ping",
			wire:     frame(codec.OpPing, false, []byte("x")),
			wantCode: codec.CloseProtocolError,
		},
		{
			name:     "continuation without a message",
			wire:     frame(codec.OpContinuation, true, []byte("x")),
			wantCode: codec.CloseProtocolError,
		},
		{
			name:     "new message inside a fragmented one",
			wire:     cat(frame(codec.OpText, false, []byte("a")), frame(codec.OpText, true, []byte("b"))),
			wantCode: codec.CloseProtocolError,
		},
		{
			name:     "close code 1005 on the wire",
			wire:     frame(codec.OpClose, true, closePayload(1005, "")),
			wantCode: codec.CloseProtocolError,
		},
		{
			name:     "close with a 1-byte payload",
			wire:     frame(codec.OpClose, true, []byte{0x03}),
			wantCode: codec.CloseProtocolError,
		},
		{
			name:     "close reason not UTF-8",
			wire:     frame(codec.OpClose, true, append(closePayload(1000, ""), 0xff)),
			wantCode: codec.CloseInvalidPayload,
		},
		{
			name:     "ping over 125 bytes",
			wire:     frame(codec.OpPing, true, make([]byte, 126)),
			wantCode: codec.CloseProtocolError,
		},
		{
			name:     "64-bit length with the top bit set",
			wire:     []byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1},
			wantCode: codec.CloseProtocolError,
		},
		{
			name:     "invalid UTF-8 text",
			wire:     frame(codec.OpText, true, []byte{'o', 'k', 0xff, 0xfe}),
			wantCode: codec.CloseInvalidPayload,
		},
		{
			name:     "invalid UTF-8 across fragments",
			wire:     cat(frame(codec.OpText, false, []byte{0xe2, 0x82}), frame(codec.OpContinuation, true, []byte{'x'})),
			wantCode: codec.CloseInvalidPayload,
		},
		{
			name:     "text ends inside a rune",
			wire:     frame(codec.OpText, true, []byte{'a', 0xe2, 0x82}),
			wantCode: codec.CloseInvalidPayload,
		},
		{
			name:     "message over the limit",
			wire:     frame(codec.OpBinary, true, make([]byte, limit+1)),
			wantCode: codec.CloseTooBig,
		},
		{
			// Only the 4 header bytes that announce 2000 bytes: the server must refuse
			// from the header, not wait for a payload that never comes.
			name:     "oversized header only",
			wire:     binary.BigEndian.AppendUint16([]byte{0x82, 0x80 | 126}, 2000),
			wantCode: codec.CloseTooBig,
		},
		{
			name:     "fragments over the limit together",
			wire:     cat(frame(codec.OpBinary, false, make([]byte, limit/2)), frame(codec.OpContinuation, true, make([]byte, limit/2+1))),
			wantCode: codec.CloseTooBig,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			label := closeSeries(strconv.Itoa(int(tc.wantCode)))
			before := ts.Metrics(t)
			rc := upgradeRaw(t, ts)
			rc.write(t, tc.wire)
			res, err := rc.readClose(slack)
			if err != nil {
				t.Fatalf("after the bad input: %v", err)
			}
			if !res.gotClose {
				t.Fatalf("EOF without a close frame, want close %d", tc.wantCode)
			}
			if res.code != tc.wantCode {
				t.Errorf("close code = %d (%q), want %d", res.code, res.reason, tc.wantCode)
			}
			if !res.eof {
				t.Errorf("TCP connection not closed after the close frame")
			}
			for _, op := range res.frames {
				if op != ws.OpPing {
					t.Errorf("server sent a %v frame before the close, want none", op)
				}
			}
			// The server lingers until the peer closes too (or CloseTimeout passes).
			_ = rc.Close()
			ts.WaitMetric(t, label, before[label]+1)
			ts.WaitMetric(t, "ws_connections_active", 0)
			healthyEcho(t, ts)
		})
	}
}

// TestMessageLimitBoundary checks that a message of exactly -max-message-bytes passes,
// whole and fragmented.
func TestMessageLimitBoundary(t *testing.T) {
	const limit = 1024
	ts := servertest.Start(t, server.Options{MaxMessageBytes: limit})
	payload := binaryPayload(limit)
	for _, tc := range []struct {
		name string
		wire []byte
	}{
		{name: "whole", wire: clientFrame(codec.OpBinary, true, payload)},
		{name: "fragmented", wire: append(clientFrame(codec.OpBinary, false, payload[:100]),
			clientFrame(codec.OpContinuation, true, payload[100:])...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := upgradeRaw(t, ts)
			rc.write(t, tc.wire)
			op, got, err := rc.readMessage(10*time.Second, nil)
			if err != nil {
				t.Fatalf("reading the echo of a %d-byte message with a %d limit: %v", limit, limit, err)
			}
			if op != ws.OpBinary || !bytes.Equal(got, payload) {
				t.Fatalf("echo = %v, %d bytes; want binary, %d bytes", op, len(got), len(payload))
			}
		})
	}
}

// TestPingWhileServerCloses checks §5.5.2 after a server-initiated close: until the
// peer's close arrives, a ping still gets its pong (only data frames stop after a close
// is sent, §5.5.1), and the peer's close then ends the connection.
func TestPingWhileServerCloses(t *testing.T) {
	ts := servertest.Start(t, server.Options{App: server.AppPubSub})
	c := htUpgrade(t, ts.Addr)
	if f, err := c.readFrame(htSlack); err != nil || f.op != codec.OpText {
		t.Fatalf("welcome: %v, %v", f.op, err)
	}
	// A binary frame is outside the pub/sub protocol: the server closes with 1003.
	c.write(t, htMasked(codec.OpBinary, true, []byte{1}))
	f, err := c.readFrame(htSlack)
	if code, _ := htParseClose(f.payload); err != nil || f.op != codec.OpClose || code != codec.CloseUnsupportedData {
		t.Fatalf("after a binary frame: op %v code %d, %v; want close 1003", f.op, code, err)
	}
	c.write(t, htMasked(codec.OpPing, true, []byte("still there?")))
	if f, err := c.readFrame(htSlack); err != nil || f.op != codec.OpPong || string(f.payload) != "still there?" {
		t.Fatalf("ping after the server's close: op %v payload %q, %v; want its pong", f.op, f.payload, err)
	}
	c.write(t, htMasked(codec.OpClose, true, htClosePayload(codec.CloseUnsupportedData, "")))
	if err := c.expectEOF(htSlack); err != nil {
		t.Fatalf("after the client's close: %v", err)
	}
}
