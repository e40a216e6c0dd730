package loop

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Loops reserve their connections' places concurrently; however they interleave, exactly
// MaxConns reservations succeed and the count never passes it.
func TestReserveNeverPassesMaxConns(t *testing.T) {
	const limit, loops, tries = 100, 8, 1000
	h, err := New(Config{App: echoApp{}, MaxConns: limit})
	if err != nil {
		t.Fatal(err)
	}
	var granted, peak atomic.Int64
	var wg sync.WaitGroup
	for range loops {
		wg.Go(func() {
			for range tries {
				if h.reserve() {
					granted.Add(1)
				}
				if n := h.Active(); n > peak.Load() {
					peak.Store(n)
				}
			}
		})
	}
	wg.Wait()
	if granted.Load() != limit || h.Active() != limit {
		t.Errorf("granted %d, Active %d; want %d each", granted.Load(), h.Active(), limit)
	}
	if peak.Load() > limit {
		t.Errorf("Active reached %d, over MaxConns %d", peak.Load(), limit)
	}
}

func TestReserveWithoutLimit(t *testing.T) {
	h, err := New(Config{App: echoApp{}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if !h.reserve() {
			t.Fatalf("reservation %d refused with no MaxConns", i)
		}
	}
}

// At the limit, an upgrade the App accepted is refused with 503 and Retry-After, and
// counted nowhere; a place freed by a close lets the next one in.
func TestHandshakeAtCapacity(t *testing.T) {
	h, err := New(Config{App: echoApp{}, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	el := &fakeLoop{}
	first := &fakeConn{el: el, record: true}
	handshakeFake(h, first)
	if !strings.HasPrefix(string(first.out), "HTTP/1.1 101 ") || h.Active() != 1 {
		t.Fatalf("first upgrade: wrote %q, Active %d; want a 101 and 1", first.out, h.Active())
	}

	second := &fakeConn{el: el, record: true}
	handshakeFake(h, second)
	if out := string(second.out); !strings.HasPrefix(out, "HTTP/1.1 503 ") || !strings.Contains(out, "\r\nRetry-After: 1\r\n") {
		t.Errorf("second upgrade wrote %q, want a 503 with Retry-After: 1", out)
	}
	if c := second.ctx.(*Conn); c.Open() || c.upgraded() {
		t.Error("the refused connection is open")
	}
	if h.Active() != 1 {
		t.Errorf("Active = %d after a refusal, want 1", h.Active())
	}

	h.OnClose(first, nil)
	third := &fakeConn{el: el, record: true}
	handshakeFake(h, third)
	if !strings.HasPrefix(string(third.out), "HTTP/1.1 101 ") || h.Active() != 1 {
		t.Errorf("upgrade after a close: wrote %q, Active %d; want a 101 and 1", third.out, h.Active())
	}
}

// A 101 that cannot be written gives its reservation back: the socket never opened.
func TestHandshakeWriteFailureFreesPlace(t *testing.T) {
	h, err := New(Config{App: echoApp{}, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	fc := &fakeConn{el: &fakeLoop{}, failWrite: errors.New("connection reset")}
	handshakeFake(h, fc)
	if h.Active() != 0 {
		t.Fatalf("Active = %d after the 101 failed to write, want 0", h.Active())
	}
	if c := fc.ctx.(*Conn); c.Open() {
		t.Error("a connection whose 101 was not written is open")
	}
	h.OnClose(fc, nil) // gnet closes it; the count must not go negative
	if h.Active() != 0 {
		t.Errorf("Active = %d after OnClose, want 0", h.Active())
	}
}
