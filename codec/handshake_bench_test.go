package codec

import (
	"bytes"
	"io"
	"testing"

	"github.com/gobwas/ws"
)

// browserRequest is a typical browser upgrade (Chrome, about 400 bytes) through a proxy
// that added nothing: Origin, User-Agent, Sec-WebSocket-Extensions, caching headers.
var browserRequest = []byte(requestHead(
	"GET /ws?client_id=u-42 HTTP/1.1",
	"Host: ws.example.com",
	"Connection: Upgrade",
	"Pragma: no-cache",
	"Cache-Control: no-cache",
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
	"Upgrade: websocket",
	"Origin: https://app.example.com",
	"Sec-WebSocket-Version: 13",
	"Accept-Encoding: gzip, deflate, br, zstd",
	"Accept-Language: en-US,en;q=0.9",
	"Sec-WebSocket-Key: "+rfcKey,
	"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
))

// BenchmarkHandshake is the event loop's upgrade path: parse and validate the request head,
// then write the 101 into a reused buffer. It must not allocate.
func BenchmarkHandshake(b *testing.B) {
	var r Request
	out := make([]byte, 0, 256)
	b.SetBytes(int64(len(browserRequest)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseRequest(browserRequest, 0, &r); err != nil {
			b.Fatal(err)
		}
		out = AppendAccept(out[:0], &r, "")
	}
}

// BenchmarkHandshakeReject is the 426 path: parse, reject, write the error response.
func BenchmarkHandshakeReject(b *testing.B) {
	in := bytes.Replace(browserRequest, []byte("Version: 13"), []byte("Version: 8 "), 1)
	var r Request
	out := make([]byte, 0, 256)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		_, err := ParseRequest(in, 0, &r)
		he, ok := err.(*HandshakeError)
		if !ok || he.Status != 426 {
			b.Fatal(err)
		}
		out = AppendReject(out[:0], he)
	}
}

// fakeConn is a connection made of the request bytes and a sink for the response.
type fakeConn struct {
	io.Reader
	io.Writer
}

// BenchmarkHandshakeBaselineGobwas is the baseline twin: gobwas/ws's Upgrader over the same
// bytes (it reads through bufio from an io.Reader and writes the 101 to an io.Writer).
func BenchmarkHandshakeBaselineGobwas(b *testing.B) {
	var u ws.Upgrader
	rd := bytes.NewReader(browserRequest)
	conn := fakeConn{rd, io.Discard}
	b.SetBytes(int64(len(browserRequest)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(browserRequest)
		if _, err := u.Upgrade(conn); err != nil {
			b.Fatal(err)
		}
	}
}
