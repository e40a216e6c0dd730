package loop

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// spin keeps the CPU busy for d, as a posted function that writes to many sockets does.
func spin(d time.Duration) {
	for t := time.Now(); time.Since(t) < d; {
	}
}

// TestPostFloodLeavesLoopLive floods one loop with posted work faster than it can run it
// (what maxPosted bounds) and checks that the loop still accepts, reads and runs its
// timers meanwhile: a connection that never sends its request is closed by its 100 ms
// handshake deadline. With a runnable queued per Post, gnet ran posted work without
// polling again for as long as the flood lasted, and the deadline never fired.
func TestPostFloodLeavesLoopLive(t *testing.T) {
	h, _, _ := engineWithSocket(t, Config{App: echoApp{}, HandshakeTimeout: 100 * time.Millisecond, Tick: 5 * time.Millisecond})
	addr := h.Addr().String()
	l := h.Loops()[0]

	var accepted, ran atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if l.Post(func() { ran.Add(1); spin(5 * time.Microsecond) }) == nil {
					accepted.Add(1)
				} else {
					runtime.Gosched() // the backlog is full
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(300 * time.Millisecond) // the flood is on

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	// The bound is a deadlock guard, twenty times the deadline: the handshake deadline
	// fires at the loop's next tick after 100 ms, behind at most a few batches of posts.
	_ = idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	start := time.Now()
	_, err = idle.Read(make([]byte, 1))
	t.Logf("pending connection ended after %v (%v); posts accepted %d, run %d", time.Since(start), err, accepted.Load(), ran.Load())
	if err == nil || isTimeout(err) {
		t.Errorf("the pending connection is still open (%v): the loop ran no timer while posts flooded it (%d accepted, %d run)", err, accepted.Load(), ran.Load())
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// quietGnet drops gnet's logs.
type quietGnet struct{}

func (quietGnet) Debugf(string, ...any) {}
func (quietGnet) Infof(string, ...any)  {}
func (quietGnet) Warnf(string, ...any)  {}
func (quietGnet) Errorf(string, ...any) {}
func (quietGnet) Fatalf(string, ...any) {}

// Once the engine is shutting down, Post refuses instead of queueing work that no
// runnable will ever run (and the caller counts it as failed).
func TestPostRefusedAfterShutdown(t *testing.T) {
	h, err := New(Config{App: echoApp{}})
	if err != nil {
		t.Fatal(err)
	}
	fc := &fakeConn{el: &fakeLoop{h: h}}
	handshakeFake(h, fc)
	l := fc.ctx.(*Conn).Loop()
	h.OnShutdown(gnet.Engine{})
	ran := false
	if err := l.Post(func() { ran = true }); !errors.Is(err, ErrEngineStopped) || ran {
		t.Errorf("Post after shutdown = %v (ran %v), want ErrEngineStopped and nothing run", err, ran)
	}
}

// TestPostFloodLeavesReadsLive floods one loop with posted work at 120 % of what it can
// run (one 1.2 ms post every millisecond) and checks that it still reads and answers a
// socket meanwhile: between batches the loop must poll for I/O. The bound is a deadlock
// guard, far above the few milliseconds an answer takes.
func TestPostFloodLeavesReadsLive(t *testing.T) {
	h, nc, br := engineWithSocket(t, Config{App: echoApp{}})
	l := h.Loops()[0]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			_ = l.Post(func() { spin(1200 * time.Microsecond) })
		}
	})
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(300 * time.Millisecond) // the backlog builds

	start := time.Now()
	_ = nc.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := nc.Write([]byte{0x81, 0x82, 0, 0, 0, 0, 'h', 'i'}); err != nil {
		t.Fatal(err)
	}
	var echo [4]byte
	if _, err := io.ReadFull(br, echo[:]); err != nil {
		t.Fatalf("no echo during the flood (%v after the send): %v", time.Since(start), err)
	}
	t.Logf("echo during the flood after %v", time.Since(start))
}

// engineWithSocket runs a real one-loop gnet engine on h := New(cfg) and opens one
// upgraded socket to it (which creates the loop's shard), with the reader past the 101.
// The engine stops and the socket closes at the test's end.
func engineWithSocket(t *testing.T, cfg Config) (*Handler, net.Conn, *bufio.Reader) {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- gnet.Run(h, "tcp://127.0.0.1:0", gnet.WithNumEventLoop(1), gnet.WithTicker(true), gnet.WithLogger(quietGnet{}))
	}()
	<-h.Booted()
	t.Cleanup(func() { _ = h.Engine().Stop(context.Background()); <-done })
	nc, err := net.Dial("tcp", h.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if _, err := nc.Write([]byte(upgradeRequest)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 101") {
		t.Fatalf("upgrade: %q, %v", line, err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			return h, nc, br
		}
	}
}
