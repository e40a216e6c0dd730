package loop

import (
	"testing"

	"github.com/wsreactor/wsreactor/codec"
)

// Loop.Broadcast passes a held connection by and reaches it again once released.
func TestBroadcastSkipsHeld(t *testing.T) {
	_, fc := upgraded(t)
	c := fc.ctx.(*Conn)
	frame := codec.AppendFrame(nil, codec.OpText, true, []byte("hi"))
	c.Hold()
	before := fc.written
	if n := c.Loop().Broadcast(frame); n != 0 || fc.written != before {
		t.Fatalf("held: Broadcast reached %d sockets and wrote %d bytes, want none", n, fc.written-before)
	}
	c.Release()
	if n := c.Loop().Broadcast(frame); n != 1 || fc.written != before+len(frame) {
		t.Fatalf("released: Broadcast reached %d sockets and wrote %d bytes, want 1 and %d", n, fc.written-before, len(frame))
	}
}
