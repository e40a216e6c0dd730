package server_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// hdDrainSeen is what one client saw of a drain, in order.
type hdDrainSeen struct {
	reconnectMs int64     // SERVER_SHUTDOWN's reconnectInMs
	closeAt     time.Time // the close frame arrived
	code        codec.CloseCode
	endAt       time.Time // the TCP connection ended
	err         error
}

// hdWatchDrain reads c until the server ends it, expecting DESIGN.md's drain: a
// SERVER_SHUTDOWN message, then a close frame, then (after the close reply, when reply is
// set) the end of the TCP connection. first is called when SERVER_SHUTDOWN arrives.
func hdWatchDrain(c *hdConn, within time.Duration, reply bool, first func()) hdDrainSeen {
	var s hdDrainSeen
	m, err := c.readMsg(within)
	if err != nil {
		s.err = fmt.Errorf("want SERVER_SHUTDOWN, got %w", err)
		return s
	}
	if m.Type != "SERVER_SHUTDOWN" || m.ReconnectInMs == nil {
		s.err = fmt.Errorf("want SERVER_SHUTDOWN with reconnectInMs, got %+v", m)
		return s
	}
	first()
	s.reconnectMs = *m.ReconnectInMs
	m, err = c.readMsg(10 * time.Second)
	var ce *hdCloseError
	if !errors.As(err, &ce) {
		s.err = fmt.Errorf("want a close frame after SERVER_SHUTDOWN, got %+v, %v", m, err)
		return s
	}
	s.closeAt, s.code = time.Now(), ce.code
	if reply {
		if err := c.sendClose(ce.code); err != nil {
			s.err = fmt.Errorf("close reply: %w", err)
			return s
		}
	}
	if _, err := c.expectEnd(10 * time.Second); err != nil {
		s.err = fmt.Errorf("after the close frame: %w", err)
		return s
	}
	s.endAt = time.Now()
	return s
}

// hdConnectMany upgrades n raw clients to hs with a few workers and reads each welcome.
func hdConnectMany(t *testing.T, hs *servertest.Server, n int) []*hdConn {
	t.Helper()
	return hdConnectEach(t, hs, n, func(int) *net.Dialer { return nil }, nil)
}

// hdConnectEach is hdConnectMany with client i dialled by dialer(i) (nil: hdUpgrade's
// default) and, when setup is not nil, set up by it after its welcome.
func hdConnectEach(t *testing.T, hs *servertest.Server, n int, dialer func(i int) *net.Dialer, setup func(*hdConn) error) []*hdConn {
	t.Helper()
	conns := make([]*hdConn, n)
	errs := make(chan error, n)
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				c, resp, err := hdUpgrade(t, dialer(i), hs.Addr, "/")
				if err == nil && c == nil {
					err = fmt.Errorf("upgrade status %s", resp.Status)
				}
				if err == nil {
					var m hdMsg
					if m, err = c.readMsg(15 * time.Second); err == nil && m.Type != "welcome" {
						err = fmt.Errorf("first message %+v, want welcome", m)
					}
				}
				if err == nil && setup != nil {
					err = setup(c)
				}
				if err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return conns
}

// TestDrainPaced checks Shutdown with 200 clients: /readyz answers 503 from the start of
// the drain, every client gets SERVER_SHUTDOWN (with the configured reconnect hint) and
// then close 1001, the closes are spread over the drain window rather than sent in one
// wave (600 more connections still in their handshake must not squeeze the schedule), new
// connections are refused during the drain, a connection accepted before the drain is
// not upgraded after it began, and Shutdown returns nil.
func TestDrainPaced(t *testing.T) {
	const (
		clients      = 200
		drainTimeout = 2 * time.Second
		window       = drainTimeout / 2 // DESIGN.md: closes paced over the first half
		hint         = 1500 * time.Millisecond
	)
	hs := servertest.Start(t, server.Options{App: server.AppPubSub, DrainTimeout: drainTimeout, ReconnectHint: hint})
	conns := hdConnectMany(t, hs, clients)
	hs.WaitMetricFunc(t, "ws_connections_active", func(v float64) bool { return v == clients })
	// Connections that have sent no request yet: the server holds them in their handshake.
	var pending []net.Conn
	for range 3 * clients {
		nc, err := net.Dial("tcp", hs.Addr)
		if err != nil {
			t.Fatalf("dialing a pending connection: %v", err)
		}
		t.Cleanup(func() { nc.Close() })
		pending = append(pending, nc)
	}

	seen := make([]hdDrainSeen, clients)
	firstGoodbye := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			seen[i] = hdWatchDrain(c, 20*time.Second, true, func() { once.Do(func() { close(firstGoodbye) }) })
		})
	}

	// Poll /readyz from its own goroutine while Shutdown runs.
	type probe struct {
		sent   time.Time
		status int // 0: no answer (the admin listener is gone once Run returns)
	}
	var probes []probe
	stopProbing := make(chan struct{})
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		for {
			select {
			case <-stopProbing:
				return
			default:
			}
			p := probe{sent: time.Now()}
			if resp, err := httpClient.Get(hs.Admin + "/readyz"); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				p.status = resp.StatusCode
			}
			probes = append(probes, p)
			time.Sleep(5 * time.Millisecond)
		}
	}()

	start := time.Now()
	shutdownErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shutdownErr <- hs.Shutdown(ctx)
	}()

	// During the drain a new connection is refused or closed without an upgrade.
	select {
	case <-firstGoodbye:
	case <-time.After(10 * time.Second):
		t.Fatal("no client got SERVER_SHUTDOWN within 10s of Shutdown")
	}
	// A connection accepted before the drain sends its upgrade request now.
	late := pending[0]
	_ = late.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := late.Write(hdUpgradeRequest(hs.Addr, "/")); err == nil {
		if resp, err := http.ReadResponse(bufio.NewReader(late), nil); err == nil {
			t.Errorf("an upgrade request sent during the drain got HTTP %s, want the connection closed", resp.Status)
		}
	}
	for i := range 3 {
		c, resp, err := hdUpgrade(t, nil, hs.Addr, "/")
		switch {
		case c != nil:
			t.Errorf("new connection %d during the drain was upgraded", i)
		case err == nil:
			t.Errorf("new connection %d during the drain got HTTP %s, want it refused or closed", i, resp.Status)
		case !hdIsEnd(err) && !errors.Is(err, syscall.ECONNREFUSED):
			t.Errorf("new connection %d during the drain: %v, want refused, EOF or reset", i, err)
		}
	}

	var shutdownTook time.Duration
	select {
	case err := <-shutdownErr:
		shutdownTook = time.Since(start)
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(5*time.Second + hdSlack):
		t.Fatal("Shutdown did not return within its context's 5s")
	}
	if err := hs.Wait(10 * time.Second); err != nil {
		t.Errorf("Run: %v", err)
	}
	close(stopProbing)
	<-probed
	wg.Wait()

	// /readyz: 503 soon after Shutdown began, and never 200 again once it was 503.
	first503 := -1
	for i, p := range probes {
		if p.status == http.StatusServiceUnavailable {
			first503 = i
			break
		}
	}
	if first503 < 0 {
		t.Fatalf("/readyz never answered 503 during the drain (%d probes)", len(probes))
	}
	if at := probes[first503].sent.Sub(start); at > hdSlack {
		t.Errorf("/readyz first answered 503 to a probe sent %v after Shutdown began", at)
	}
	for _, p := range probes[first503:] {
		if p.status == http.StatusOK {
			t.Errorf("/readyz answered 200 at %v, after answering 503", p.sent.Sub(start))
		}
	}

	var closeOffsets []time.Duration
	for i, s := range seen {
		if s.err != nil {
			t.Errorf("client %d: %v", i, s.err)
			continue
		}
		if s.code != codec.CloseGoingAway {
			t.Errorf("client %d: close code %d, want 1001", i, s.code)
		}
		if s.reconnectMs != hint.Milliseconds() {
			t.Errorf("client %d: reconnectInMs %d, want %d", i, s.reconnectMs, hint.Milliseconds())
		}
		closeOffsets = append(closeOffsets, s.closeAt.Sub(start))
	}
	if t.Failed() {
		return
	}
	slices.Sort(closeOffsets)
	spread := closeOffsets[len(closeOffsets)-1] - closeOffsets[0]
	buckets := map[time.Duration]int{}
	busiest := 0
	for _, d := range closeOffsets {
		b := d.Truncate(10 * time.Millisecond)
		buckets[b]++
		busiest = max(busiest, buckets[b])
	}
	t.Logf("closes: first %v, p50 %v, last %v; %d distinct 10ms buckets, busiest %d; Shutdown took %v",
		closeOffsets[0], closeOffsets[len(closeOffsets)/2], closeOffsets[len(closeOffsets)-1], len(buckets), busiest, shutdownTook)
	if want := window * 3 / 10; spread < want {
		t.Errorf("closes spread over %v, want at least %v of the %v window", spread, want, window)
	}
	// A wave would put most clients in one tick; paced, a tick closes a few per loop.
	if busiest > clients/4 {
		t.Errorf("%d of %d closes arrived within one 10ms bucket, want at most %d", busiest, clients, clients/4)
	}
	// The Shutdown context allows 5 s, so its first half (2.5 s) is the latest the paced
	// closes may reach (server.Shutdown's doc); DESIGN.md's half of -drain-timeout is 1 s.
	if last := closeOffsets[len(closeOffsets)-1]; last > 5*time.Second/2+hdSlack {
		t.Errorf("last close arrived %v after Shutdown began, want within the pacing window", last)
	}
	if first := closeOffsets[0]; first > hdSlack {
		t.Errorf("first close arrived %v after Shutdown began", first)
	}
}

// TestDrainUnansweredClose checks that a client that reads the close frame but never
// answers it does not hold the drain: the server closes the TCP connection after its
// close timeout (loop.DefaultCloseTimeout, 1 s) and Shutdown returns long before
// -drain-timeout.
func TestDrainUnansweredClose(t *testing.T) {
	const drainTimeout = 10 * time.Second
	hs := servertest.Start(t, server.Options{App: server.AppPubSub, DrainTimeout: drainTimeout})
	silent := hdConnectMany(t, hs, 1)[0]
	hs.WaitMetricFunc(t, "ws_connections_active", func(v float64) bool { return v == 1 })

	start := time.Now()
	shutdownErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), drainTimeout+5*time.Second)
		defer cancel()
		shutdownErr <- hs.Shutdown(ctx)
	}()
	s := hdWatchDrain(silent, 10*time.Second, false, func() {})
	if s.err != nil {
		t.Fatalf("silent client: %v", s.err)
	}
	if s.code != codec.CloseGoingAway {
		t.Errorf("close code %d, want 1001", s.code)
	}
	// The server waits for the reply a while (RFC 6455 §7.1.1), then gives up.
	const closeTimeout = time.Second
	if waited := s.endAt.Sub(s.closeAt); waited < closeTimeout/2 || waited > closeTimeout+hdSlack {
		t.Errorf("TCP connection ended %v after the close frame, want about %v", waited, closeTimeout)
	}
	select {
	case err := <-shutdownErr:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if took := time.Since(start); took > closeTimeout+hdSlack {
			t.Errorf("Shutdown took %v, want about the close timeout (%v), well before the %v drain timeout", took, closeTimeout, drainTimeout)
		}
	case <-time.After(drainTimeout + 5*time.Second + hdSlack):
		t.Fatal("Shutdown did not return")
	}
	if err := hs.Wait(10 * time.Second); err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestDrainWaitsForSlowReader checks "messages accepted before the drain are delivered":
// a subscriber that has read nothing for longer than the close timeout while a backlog
// waits for it still gets every message, then SERVER_SHUTDOWN and close 1001, once it
// reads within the drain.
func TestDrainWaitsForSlowReader(t *testing.T) {
	hs := servertest.Start(t, server.Options{App: server.AppPubSub, DrainTimeout: 20 * time.Second})
	c := hdConnectMany(t, hs, 1)[0]
	if err := c.subscribe("room"); err != nil {
		t.Fatal(err)
	}
	// Publish until gnet holds a backlog for the socket: the kernel's buffers are full.
	data := `"` + strings.Repeat("x", 32<<10) + `"`
	published := 0
	for hs.Metric(t, "ws_send_buffer_bytes") < 256<<10 {
		psPublish(t, hs, "room", data)
		published++
	}
	done := make(chan error, 1)
	go func() { done <- hs.Shutdown(context.Background()) }()
	time.Sleep(2 * time.Second) // twice the close timeout without reading a byte
	got, goodbye := 0, false
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		f, err := c.readFrame()
		if err != nil {
			t.Fatalf("after %d of %d messages (goodbye %v): %v", got, published, goodbye, err)
		}
		if f.op == codec.OpClose {
			if ce := hdParseClose(f.payload); ce.code != codec.CloseGoingAway {
				t.Errorf("close code %d, want 1001", ce.code)
			}
			break
		}
		switch s := string(f.payload); {
		case strings.Contains(s, `"SERVER_SHUTDOWN"`):
			goodbye = true
		case strings.Contains(s, `"message"`):
			got++
		}
	}
	if got != published || !goodbye {
		t.Errorf("received %d of %d messages, SERVER_SHUTDOWN %v; want all, then the goodbye", got, published, goodbye)
	}
	_ = c.sendClose(codec.CloseGoingAway)
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
