package loop

import (
	"testing"

	"github.com/wsreactor/wsreactor/codec"
)

// Loop.Broadcast passes a held connection by (counting it missed), reaches it again once
// released, and counts it as missed once it is closing.
func TestBroadcastSkipsHeld(t *testing.T) {
	_, fc := upgraded(t)
	c := fc.ctx.(*Conn)
	frame := codec.AppendFrame(nil, codec.OpText, true, []byte("hi"))
	c.Hold()
	before := fc.written
	if n, missed := c.Loop().Broadcast(frame); n != 0 || missed != 1 || fc.written != before {
		t.Fatalf("held: Broadcast reached %d sockets (%d missed) and wrote %d bytes, want none and 1 missed", n, missed, fc.written-before)
	}
	c.Release()
	if n, missed := c.Loop().Broadcast(frame); n != 1 || missed != 0 || fc.written != before+len(frame) {
		t.Fatalf("released: Broadcast reached %d sockets (%d missed) and wrote %d bytes, want 1 and %d", n, missed, fc.written-before, len(frame))
	}
	// Once a close frame is out, the socket misses what follows: counted, not written.
	c.Close(codec.CloseGoingAway, "")
	before = fc.written
	if n, missed := c.Loop().Broadcast(frame); n != 0 || missed != 1 || fc.written != before {
		t.Fatalf("closing: Broadcast reached %d sockets (%d missed) and wrote %d bytes, want 0, 1 missed, nothing", n, missed, fc.written-before)
	}
}

// BenchmarkLoopBroadcast writes one encoded frame to 1,000 upgraded sockets of one loop
// through Loop.Broadcast: ns per delivery (per op / 1000) and allocations per broadcast.
// gnet's side is faked, so this is the loop's own cost per socket, not the syscall's.
//
//	go test -run='^$' -bench=LoopBroadcast -benchmem ./loop/
func BenchmarkLoopBroadcast(b *testing.B) {
	const sockets = 1000
	h, err := New(Config{App: echoApp{}})
	if err != nil {
		b.Fatal(err)
	}
	el := &fakeLoop{}
	var l *Loop
	for range sockets {
		fc := &fakeConn{el: el}
		handshakeFake(h, fc)
		l = fc.ctx.(*Conn).Loop()
	}
	frame := codec.AppendFrame(nil, codec.OpText, true, make([]byte, 64))
	b.ReportAllocs()
	for b.Loop() {
		if n, _ := l.Broadcast(frame); n != sockets {
			b.Fatalf("reached %d of %d sockets", n, sockets)
		}
	}
}
