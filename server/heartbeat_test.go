package server_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// TestHeartbeatPings checks that a client that answers pings sees them at the configured
// interval, stays connected, and that every answered ping lands in the RTT histogram.
func TestHeartbeatPings(t *testing.T) {
	const (
		heartbeat = 100 * time.Millisecond
		window    = time.Second
		// 10 pings are due in the window; a loaded machine may run the wheel late (fewer)
		// and one catch-up ping may follow a late tick (one more), but never a burst.
		minPings = 5
		maxPings = 15
	)
	ts := servertest.Start(t, server.Options{Heartbeat: heartbeat, IdleTimeout: 600 * time.Millisecond})
	c := dialGorilla(t, ts)
	start := time.Now()

	var mu sync.Mutex
	var pingTimes []time.Time
	var pongs atomic.Int64
	c.SetPingHandler(func(data string) error {
		mu.Lock()
		pingTimes = append(pingTimes, time.Now())
		mu.Unlock()
		// Counted before the write: the server may take the RTT sample before it returns.
		pongs.Add(1)
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(5*time.Second))
	})
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				readErr <- err
				return
			}
		}
	}()

	select {
	case err := <-readErr:
		t.Fatalf("connection ended during the window (a client that answers pings must stay): %v", err)
	case <-time.After(window):
	}
	mu.Lock()
	n := 0
	for _, pt := range pingTimes {
		if pt.Sub(start) <= window {
			n++
		}
	}
	mu.Unlock()
	if n < minPings || n > maxPings {
		t.Errorf("%d pings in %v with a %v heartbeat, want %d..%d", n, window, heartbeat, minPings, maxPings)
	}

	// Every answered ping is one RTT sample, except that a ping sent while an older one
	// is unanswered shares its sample; on loopback that is rare, so most pongs count.
	var count, sum float64
	var answered int64
	eventually(t, 5*time.Second, func() bool {
		m := ts.Metrics(t)
		answered = pongs.Load() // read after the scrape: no sample can precede its pong
		count, sum = m["ws_heartbeat_rtt_seconds_count"], m["ws_heartbeat_rtt_seconds_sum"]
		if count > float64(answered) {
			t.Fatalf("ws_heartbeat_rtt_seconds_count = %v, more than the %d pongs sent", count, answered)
		}
		return count >= minPings && count >= float64(answered)/2
	}, func() string {
		return fmt.Sprintf("ws_heartbeat_rtt_seconds_count = %v after %d pongs", count, answered)
	})
	if mean := sum / count; mean <= 0 || mean > 0.5 {
		t.Errorf("mean heartbeat RTT on loopback = %vs, want (0, 0.5]", mean)
	}
	if got := ts.Metric(t, "ws_zombies_reaped_total"); got != 0 {
		t.Errorf("ws_zombies_reaped_total = %v, want 0 for a client that answers pings", got)
	}
}

// TestHeartbeatRTTOfLatePong checks the RTT sample of a pong that comes after the next
// ping went out: it is timed from the older ping, so it is at least a heartbeat long. The
// client answers every second ping only, with one pong.
func TestHeartbeatRTTOfLatePong(t *testing.T) {
	const (
		heartbeat = 100 * time.Millisecond
		tick      = 10 * time.Millisecond // server.Options' default: pings go out up to a tick late
	)
	ts := servertest.Start(t, server.Options{Heartbeat: heartbeat, IdleTimeout: time.Second})
	c := dialGorilla(t, ts)
	var pings, pongs atomic.Int64
	c.SetPingHandler(func(data string) error {
		if pings.Add(1)%2 == 1 {
			return nil // leave it unanswered: the next pong answers both
		}
		pongs.Add(1)
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(5*time.Second))
	})
	go func() {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	var count, sum float64
	eventually(t, 5*time.Second, func() bool {
		m := ts.Metrics(t)
		count, sum = m["ws_heartbeat_rtt_seconds_count"], m["ws_heartbeat_rtt_seconds_sum"]
		return count >= 3
	}, func() string {
		return fmt.Sprintf("ws_heartbeat_rtt_seconds_count = %v after %d pongs", count, pongs.Load())
	})
	if mean := sum / count; mean < (heartbeat-tick).Seconds() || mean > (heartbeat+500*time.Millisecond).Seconds() {
		t.Errorf("mean RTT of pongs answering the older of two pings = %vs, want [%v, %v]", mean, heartbeat-tick, heartbeat+500*time.Millisecond)
	}
}

// TestZombieReaped checks that a client that completes the handshake and then never sends
// another byte is closed with 4001 within the idle timeout, and counted.
func TestZombieReaped(t *testing.T) {
	const (
		heartbeat = 100 * time.Millisecond
		idle      = 300 * time.Millisecond
	)
	ts := servertest.Start(t, server.Options{Heartbeat: heartbeat, IdleTimeout: idle})
	rc := upgradeRaw(t, ts)
	res, err := rc.readClose(idle + slack)
	if err != nil {
		t.Fatalf("waiting for the zombie to be closed: %v (after %v)", err, res.after)
	}
	if !res.eof {
		t.Fatalf("connection still open after %v", res.after)
	}
	// The deadline runs from the last read, the handshake, which the server saw a little
	// before this client read the 101; reaping at the first ping would be 100 ms.
	if res.after < idle-heartbeat {
		t.Errorf("closed after %v, before the %v idle timeout", res.after, idle)
	}
	// The close frame is best effort, but on loopback it arrives; when it does, the code
	// must be 4001.
	if res.gotClose && res.code != codec.CloseIdleTimeout {
		t.Errorf("close code = %d, want %d", res.code, codec.CloseIdleTimeout)
	}
	if !res.gotClose {
		t.Logf("no close frame before EOF (allowed: best effort)")
	}
	for _, op := range res.frames {
		if op != ws.OpPing {
			t.Errorf("zombie received a %v frame, want only pings", op)
		}
	}
	ts.WaitMetric(t, "ws_zombies_reaped_total", 1)
	ts.WaitMetric(t, closeSeries("4001"), 1)
	ts.WaitMetric(t, "ws_connections_active", 0)
	ts.WaitMetric(t, "ws_connections_closed_total", 1)
}

// TestDataKeepsAlive checks that any inbound frame counts as liveness: a client that
// sends data every 50 ms but never answers a ping outlives the idle timeout many times
// over, and is reaped once it falls silent.
func TestDataKeepsAlive(t *testing.T) {
	const (
		heartbeat = 100 * time.Millisecond
		idle      = 300 * time.Millisecond
		every     = 50 * time.Millisecond
		alive     = time.Second
	)
	ts := servertest.Start(t, server.Options{Heartbeat: heartbeat, IdleTimeout: idle})
	rc := upgradeRaw(t, ts)

	type event struct {
		op   ws.OpCode
		code codec.CloseCode
		err  error
	}
	events := make(chan event, 1024)
	go func() {
		defer close(events)
		for {
			f, err := rc.readFrame(30 * time.Second)
			if err != nil {
				events <- event{err: err}
				return
			}
			ev := event{op: f.Header.OpCode}
			if ev.op == ws.OpClose {
				ev.code, _ = parseClosePayload(f.Payload)
			}
			events <- ev
		}
	}()

	var pings, echoes int
	tick := time.NewTicker(every)
	deadline := time.After(alive)
sending:
	for {
		select {
		case <-tick.C:
			rc.write(t, clientFrame(codec.OpText, true, []byte("keepalive")))
		case ev := <-events:
			switch ev.op {
			case ws.OpPing:
				pings++ // deliberately never answered
			case ws.OpText:
				echoes++
			default:
				t.Fatalf("connection ended while the client sent every %v: frame %v code %d, err %v (%d pings, %d echoes)",
					every, ev.op, ev.code, ev.err, pings, echoes)
			}
		case <-deadline:
			break sending
		}
	}
	tick.Stop()
	if pings == 0 {
		t.Errorf("no pings in %v with a %v heartbeat", alive, heartbeat)
	}
	if echoes == 0 {
		t.Errorf("no echoes received")
	}
	if got := ts.Metric(t, "ws_zombies_reaped_total"); got != 0 {
		t.Fatalf("ws_zombies_reaped_total = %v while the client was sending", got)
	}

	// Silence now: the same socket is a zombie one idle timeout after its last frame.
	silent := time.Now()
	limit := time.After(idle + slack)
	var gotClose bool
	for open := true; open; {
		select {
		case ev, ok := <-events:
			switch {
			case !ok:
				open = false
			case ev.op == ws.OpClose:
				gotClose = true
				if ev.code != codec.CloseIdleTimeout {
					t.Errorf("close code = %d, want %d", ev.code, codec.CloseIdleTimeout)
				}
			case ev.err != nil && !isClosedErr(ev.err):
				t.Fatalf("silent client: want EOF, got %v after %v", ev.err, time.Since(silent))
			}
		case <-limit:
			t.Fatalf("silent client still connected %v after its last frame (idle timeout %v)", time.Since(silent), idle)
		}
	}
	if !gotClose {
		t.Logf("no close frame before EOF (allowed: best effort)")
	}
	ts.WaitMetric(t, "ws_zombies_reaped_total", 1)
	ts.WaitMetric(t, closeSeries("4001"), 1)
}
