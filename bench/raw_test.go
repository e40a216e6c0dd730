package bench_test

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsreactor/wsreactor/bench"
)

// tcpEcho is a bare TCP echo server, the stand-in for bench/peers/gnetecho in the raw
// (floor) scenarios: it returns every byte and counts the sockets it accepted and holds.
type tcpEcho struct {
	ln       net.Listener
	accepted atomic.Int64
	open     atomic.Int64
	wg       sync.WaitGroup
}

func startTCPEcho(t *testing.T) *tcpEcho {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	e := &tcpEcho{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			e.open.Add(1)
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer e.open.Add(-1)
				_, _ = io.Copy(c, c)
				_ = c.Close()
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); e.wg.Wait() })
	return e
}

func (e *tcpEcho) url() string { return "ws://" + e.ln.Addr().String() + "/" }

// TestRawFloor runs the two scenarios that measure a bare TCP server (-raw): echo gets
// every message back byte for byte, and idle holds every socket for its duration, as the
// server counted them.
func TestRawFloor(t *testing.T) {
	const conns = 50
	t.Run("echo", func(t *testing.T) {
		e := startTCPEcho(t)
		r := runSwarm(t, bench.Config{Scenario: bench.ScenarioEcho, URL: e.url(), Raw: true, Conns: conns, Duration: time.Second, Size: 64})
		checkConnected(t, r, conns)
		if r.Echo == nil || r.Echo.Sent == 0 || r.Echo.Sent != r.Echo.Received || r.Lost != 0 {
			t.Fatalf("raw echo: %+v lost %d, want messages sent, all received, none lost", r.Echo, r.Lost)
		}
		if got := e.accepted.Load(); got != conns {
			t.Errorf("server accepted %d sockets, want %d", got, conns)
		}
	})
	t.Run("idle", func(t *testing.T) {
		e := startTCPEcho(t)
		r := runSwarm(t, bench.Config{Scenario: bench.ScenarioIdle, URL: e.url(), Raw: true, Conns: conns, Duration: 500 * time.Millisecond})
		checkConnected(t, r, conns)
		if r.Idle == nil || r.Idle.Kept != conns || r.Idle.ClosedByServer != 0 || r.Idle.Pings != 0 {
			t.Fatalf("raw idle: %+v, want %d kept, none closed by the server, no pings (a TCP server sends none)", r.Idle, conns)
		}
		if got := e.accepted.Load(); got != conns {
			t.Errorf("server accepted %d sockets, want %d", got, conns)
		}
		// The swarm closes its sockets when the run ends; the server sees every one go.
		deadline := time.Now().Add(pollFor)
		for e.open.Load() != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := e.open.Load(); got != 0 {
			t.Errorf("server still holds %d sockets after the run, want 0", got)
		}
	})
}
