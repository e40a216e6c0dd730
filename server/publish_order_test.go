package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// A pub refused because the publish queue is full is answered with an error frame in
// request order: behind the welcome, which is always a client's first frame. (Internal:
// the test fills the queue's byte budget directly.)
func TestRefusedPublishAfterWelcome(t *testing.T) {
	s, err := New(Options{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", App: AppPubSub,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Run(context.Background()) }()
	<-s.Started()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	s.pubqBytes.Add(maxPublishQueueBytes) // the publish queue is full

	nc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	pub := `{"op":"pub","channel":"c","data":1}`
	frame := append([]byte{0x81, 0x80 | byte(len(pub)), 0, 0, 0, 0}, pub...) // masked with a zero key
	req := "GET /?client_id=alice HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := nc.Write(append([]byte(req), frame...)); err != nil { // the pub right behind the upgrade
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the 101: %v", err)
		}
		if line == "\r\n" {
			break
		}
	}
	var got []string
	for range 2 {
		var h [4]byte
		if _, err := io.ReadFull(br, h[:2]); err != nil {
			t.Fatalf("frame %d: %v", len(got)+1, err)
		}
		n := int(h[1] & 0x7f)
		if n == 126 {
			if _, err := io.ReadFull(br, h[2:4]); err != nil {
				t.Fatal(err)
			}
			n = int(binary.BigEndian.Uint16(h[2:4]))
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			t.Fatal(err)
		}
		got = append(got, string(p))
	}
	if !strings.Contains(got[0], `"type":"welcome"`) || !strings.Contains(got[1], `"code":"rate_limited"`) {
		t.Errorf("frames %q, want the welcome, then the refusal", got)
	}
}
