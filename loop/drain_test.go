package loop

import (
	"bytes"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsreactor/wsreactor/codec"
)

// A connection accepted before a drain that sends its upgrade request after the drain
// began is closed, not upgraded: a draining node opens no new sessions.
func TestNoUpgradeAfterDrainBegan(t *testing.T) {
	h, err := New(Config{App: echoApp{}})
	if err != nil {
		t.Fatal(err)
	}
	el := &fakeLoop{h: h}
	fc := &fakeConn{el: el, record: true}
	h.OnOpen(fc)
	// Two open connections after it: a drain paced over an hour closes one of them at
	// its start and reaches no further, so fc is still in its handshake.
	for range 2 {
		handshakeFake(h, &fakeConn{el: el})
	}
	h.Drain(nil, time.Hour)
	if fc.ctx == nil {
		t.Fatal("the drain's first step closed the pending connection; the test needs it open")
	}
	fc.in = []byte(upgradeRequest)
	if act := h.OnTraffic(fc); act != gnet.Close {
		t.Errorf("OnTraffic = %v, want the connection closed", act)
	}
	if len(fc.out) != 0 || h.Active() != 2 {
		t.Errorf("wrote %q, Active %d; want nothing written and only the 2 earlier sockets open", fc.out, h.Active())
	}
}

// holdApp holds every connection at Open, as pub/sub does until its welcome.
type holdApp struct{ echoApp }

func (holdApp) Open(c *Conn) { c.Hold() }

// A drain does not send its goodbye to a connection held for its welcome: within the
// window it waits for the release, and past it the connection is closed with 1001 alone.
func TestDrainGoodbyeNotBeforeWelcome(t *testing.T) {
	h, err := New(Config{App: holdApp{}})
	if err != nil {
		t.Fatal(err)
	}
	fc := &fakeConn{el: &fakeLoop{h: h}, record: true}
	handshakeFake(h, fc)
	c := fc.ctx.(*Conn)
	fc.out = nil
	goodbye := codec.AppendFrame(nil, codec.OpText, true, []byte(`{"type":"SERVER_SHUTDOWN"}`))

	h.Drain(goodbye, time.Hour)
	if len(fc.out) != 0 || !c.Open() {
		t.Fatalf("held connection: drain wrote %q (open %v), want nothing yet", fc.out, c.Open())
	}
	welcome := codec.AppendFrame(nil, codec.OpText, true, []byte(`{"type":"welcome"}`))
	c.WriteMessage(codec.OpText, []byte(`{"type":"welcome"}`)) // as pub/sub writes it, while held
	c.Release()
	c.sh.drainStep()
	if !bytes.HasPrefix(fc.out, append(welcome, goodbye...)) || c.state != stateClosing {
		t.Errorf("after the release: wrote %q, state %d; want welcome, goodbye, then the close", fc.out, c.state)
	}

	// Past the window, a connection still held gets the close alone.
	h2, _ := New(Config{App: holdApp{}})
	fc2 := &fakeConn{el: &fakeLoop{h: h2}, record: true}
	handshakeFake(h2, fc2)
	fc2.out = nil
	h2.Drain(goodbye, 0)
	if bytes.Contains(fc2.out, goodbye) || fc2.ctx.(*Conn).state != stateClosing {
		t.Errorf("held past the window: wrote %q, want only a close frame", fc2.out)
	}
}

// A drain stops pacing once the window is over and nothing is left to close, even when
// some sockets left by themselves (so fewer closes were made than counted at the start):
// the loop then sleeps between timers instead of ticking until the deadline.
func TestDrainPacingEndsWhenSocketsLeave(t *testing.T) {
	h, err := New(Config{App: echoApp{}})
	if err != nil {
		t.Fatal(err)
	}
	el := &fakeLoop{h: h}
	fcs := make([]*fakeConn, 3)
	for i := range fcs {
		fcs[i] = &fakeConn{el: el}
		handshakeFake(h, fcs[i])
	}
	sh := fcs[0].ctx.(*Conn).sh
	h.Drain(nil, time.Hour) // closes one of three at the start
	for _, fc := range fcs {
		if c := fc.ctx.(*Conn); c.Open() {
			h.OnClose(fc, nil) // the other two leave on their own
		}
	}
	sh.now = sh.drain.start.Add(2 * time.Hour) // past the window
	sh.drainStep()
	if sh.drain.pacing {
		t.Errorf("still pacing with nothing left to close (done %d of %d)", sh.drain.done, sh.drain.total)
	}
	if !sh.drain.active {
		t.Error("the drain is no longer marked active")
	}
}

// A loop whose first connection passed OnOpen's draining check just before a drain began
// is not in the list the drain walks: it starts its own drain when it registers.
func TestDrainReachesLoopRegisteredLate(t *testing.T) {
	h, err := New(Config{App: echoApp{}})
	if err != nil {
		t.Fatal(err)
	}
	h.Drain(nil, time.Second) // no loop has a connection yet
	el := &fakeLoop{h: h}
	sh := h.shardOf(el) // what OnOpen does next for a connection already past the check
	if !sh.drain.active || sh.drain.window != time.Second {
		t.Errorf("a loop registered after the drain began is not draining (%+v)", sh.drain)
	}
}
