package loop

import (
	"testing"

	"github.com/wsreactor/wsreactor/codec"
)

// The queued-bytes gauge returns to zero when a socket that held more than 2 GiB (no
// SendBufferLimit) drains, and when it closes: the shard total moves with the socket's
// own 32-bit count.
func TestQueuedNoDriftOver2GiB(t *testing.T) {
	h, err := New(Config{App: echoApp{}, SendBufferLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	fc := &fakeConn{el: &fakeLoop{}}
	handshakeFake(h, fc)
	c := fc.ctx.(*Conn)
	fc.outbound = 3 << 30
	c.WriteFrame(codec.AppendFrame(nil, codec.OpText, true, []byte("x")))
	if got := h.Queued(); got <= 0 {
		t.Fatalf("Queued() = %d with 3 GiB held, want it counted", got)
	}
	fc.outbound = 0
	c.sh.recheckCongested()
	if got := h.Queued(); got != 0 {
		t.Errorf("Queued() = %d after the socket drained, want 0", got)
	}
	fc.outbound = 3 << 30
	c.WriteFrame(codec.AppendFrame(nil, codec.OpText, true, []byte("x")))
	h.OnClose(fc, nil)
	if got := h.Queued(); got != 0 {
		t.Errorf("Queued() = %d after the socket closed, want 0", got)
	}
}

// stuckConn is a fakeConn whose peer reads nothing: every byte written stays buffered.
type stuckConn struct{ *fakeConn }

func (s stuckConn) Write(b []byte) (int, error) {
	n, err := s.fakeConn.Write(b)
	s.outbound += n
	return n, err
}

// A socket the server is closing still answers pings (§5.5.2), but a peer that pings
// without reading cannot make it buffer pongs past SendBufferLimit: it is closed as a
// slow consumer, as an open one would be.
func TestPongsWhileClosingHeldToLimit(t *testing.T) {
	const limit = 64 << 10
	h, err := New(Config{App: echoApp{}, SendBufferLimit: limit})
	if err != nil {
		t.Fatal(err)
	}
	sc := stuckConn{&fakeConn{el: &fakeLoop{h: h}}}
	h.OnOpen(sc)
	sc.in = []byte(upgradeRequest)
	h.OnTraffic(sc)
	c := sc.ctx.(*Conn)
	sc.outbound = 0
	c.Close(codec.CloseGoingAway, "server shutdown")
	var pings []byte
	for range 2000 {
		pings = codec.AppendClientFrame(pings, codec.OpPing, true, make([]byte, 125), [4]byte{1, 2, 3, 4})
	}
	sc.in = pings
	h.OnTraffic(sc)
	if sc.outbound > 2*limit || c.state != stateClosed {
		t.Errorf("closing socket holds %d bytes of pongs (limit %d) and is in state %d, want it closed near the limit", sc.outbound, limit, c.state)
	}
}
