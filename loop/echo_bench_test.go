package loop

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsreactor/wsreactor/codec"
)

// The loop's per-message path (OnTraffic -> decode -> App -> frame and write) measured
// without sockets: gnet's side is faked, so the figures are the loop's own CPU and
// allocations per message, free of the syscall noise that dominates an end-to-end echo
// on a shared machine (BENCHMARKS.md section 4 has those).
//
//	go test -run='^$' -bench=LoopEcho -benchmem ./loop/

// fakeConn is the part of gnet.Conn the loop uses, over an in-memory inbound buffer; the
// embedded interface is nil, so a method the loop starts to use panics here until faked.
type fakeConn struct {
	gnet.Conn
	el      *fakeLoop
	in      []byte
	written int
	ctx     any

	record    bool   // keep a copy of what is written in out (tests; the benchmark does not)
	out       []byte // what was written, when record is set
	failWrite error  // returned by Write when set
	outbound  int    // what OutboundBuffered reports: bytes gnet would hold for the peer
}

func (f *fakeConn) Peek(n int) ([]byte, error) {
	if n > len(f.in) {
		return nil, io.ErrShortBuffer
	}
	if n <= 0 {
		n = len(f.in)
	}
	return f.in[:n], nil
}

func (f *fakeConn) Discard(n int) (int, error) {
	if n <= 0 || n > len(f.in) { // gnet: n <= 0 discards everything
		n = len(f.in)
	}
	f.in = f.in[n:]
	return n, nil
}

func (f *fakeConn) InboundBuffered() int  { return len(f.in) }
func (f *fakeConn) OutboundBuffered() int { return f.outbound }
func (f *fakeConn) Write(b []byte) (int, error) {
	if f.failWrite != nil {
		return 0, f.failWrite
	}
	f.written += len(b)
	if f.record {
		f.out = append(f.out, b...)
	}
	return len(b), nil
}

func (f *fakeConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	f.written += n
	return n, nil
}
func (f *fakeConn) Context() any              { return f.ctx }
func (f *fakeConn) SetContext(v any)          { f.ctx = v }
func (f *fakeConn) EventLoop() gnet.EventLoop { return f.el }
func (f *fakeConn) RemoteAddr() net.Addr      { return nil }
func (f *fakeConn) Fd() int                   { return -1 } // linger's shutdown(2) fails harmlessly

// fakeLoop is a gnet.EventLoop that runs what is posted to it at once, in the caller,
// and whose Close runs h's OnClose at once, as gnet's does (the benchmark does neither).
type fakeLoop struct {
	gnet.EventLoop
	h *Handler
}

func (*fakeLoop) Execute(ctx context.Context, r gnet.Runnable) error { return r.Run(ctx) }
func (l *fakeLoop) Close(c gnet.Conn) error {
	l.h.OnClose(c, nil)
	return nil
}

// echoApp accepts every upgrade and echoes every message, as server's -app echo does.
type echoApp struct{}

func (echoApp) Accept(*Conn, *codec.Request) (string, []string, *codec.HandshakeError) {
	return "", nil, nil
}
func (echoApp) Open(*Conn)                                       {}
func (echoApp) Message(c *Conn, op codec.OpCode, payload []byte) { c.WriteMessage(op, payload) }
func (echoApp) Closed(*Conn)                                     {}

// upgradeRequest is a valid client handshake.
const upgradeRequest = "GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// handshakeFake opens fc on h and feeds it upgradeRequest.
func handshakeFake(h *Handler, fc *fakeConn) {
	h.OnOpen(fc)
	fc.in = []byte(upgradeRequest)
	h.OnTraffic(fc)
}

// upgraded returns a handler and a fake connection it has upgraded.
func upgraded(tb testing.TB) (*Handler, *fakeConn) {
	tb.Helper()
	h, err := New(Config{App: echoApp{}})
	if err != nil {
		tb.Fatal(err)
	}
	fc := &fakeConn{el: &fakeLoop{}}
	handshakeFake(h, fc)
	if c, _ := fc.ctx.(*Conn); c == nil || !c.Open() || len(fc.in) != 0 {
		tb.Fatalf("the fake connection did not upgrade (context %v, %d bytes left)", fc.ctx, len(fc.in))
	}
	return h, fc
}

// BenchmarkLoopEcho feeds one masked client frame a read and lets the echo App answer it:
// ns and allocations per message through the loop.
func BenchmarkLoopEcho(b *testing.B) {
	for _, tc := range []struct {
		name string
		size int
	}{{"64B", 64}, {"4KiB", 4 << 10}} {
		size := tc.size
		b.Run(tc.name, func(b *testing.B) {
			h, fc := upgraded(b)
			frame := codec.AppendClientFrame(nil, codec.OpBinary, true, make([]byte, size), [4]byte{1, 2, 3, 4})
			buf := make([]byte, len(frame))
			b.SetBytes(int64(size))
			b.ReportAllocs()
			want := fc.written + codec.FrameSize(size)
			for b.Loop() {
				fc.in = append(buf[:0], frame...) // Decode unmasks in place
				h.OnTraffic(fc)
			}
			if fc.written < want || len(fc.in) != 0 {
				b.Fatalf("wrote %d bytes with %d unread; the echo did not run", fc.written, len(fc.in))
			}
		})
	}
}
