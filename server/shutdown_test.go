package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// TestShutdownDrains checks Shutdown with clients connected under -app echo: /readyz
// turns 503 while the drain runs, new upgrades are refused, every client gets
// SERVER_SHUTDOWN then close 1001 (DESIGN.md, Drain: "in every -app"), and Run returns nil.
func TestShutdownDrains(t *testing.T) {
	const (
		clients = 20
		hint    = 1500 * time.Millisecond
	)
	ts := servertest.Start(t, server.Options{ReconnectHint: hint})

	type outcome struct {
		goodbye []string // text messages before the close
		code    int
		err     error
	}
	results := make(chan outcome, clients)
	var wg sync.WaitGroup
	// Client 0 does not read until the test has seen the drain, so the server waits for
	// its close reply and the drain lasts long enough to be observed.
	lateStart := make(chan struct{})
	for i := range clients {
		c := dialGorilla(t, ts)
		wg.Go(func() {
			if i == 0 {
				<-lateStart
			}
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			var o outcome
			for {
				op, msg, err := c.ReadMessage()
				if err == nil && op == websocket.TextMessage {
					o.goodbye = append(o.goodbye, string(msg))
					continue
				}
				if ce, ok := errors.AsType[*websocket.CloseError](err); ok {
					o.code = ce.Code
				} else {
					o.code, o.err = -1, fmt.Errorf("type %d %q, %w", op, msg, err)
				}
				results <- o
				return
			}
		})
	}
	ts.WaitMetric(t, "ws_connections_active", clients)

	// The drain paces closes over half the time the context allows; 6 s keeps that short
	// and leaves room for the engine to stop.
	shutdownErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
		defer cancel()
		shutdownErr <- ts.Shutdown(ctx)
	}()

	// /readyz must turn 503 while the admin listener is still up.
	eventually(t, 5*time.Second, func() bool {
		resp, err := httpClient.Get(ts.Admin + "/readyz")
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	}, func() string { return "/readyz never answered 503 during the drain" })
	if ts.Ready() {
		t.Errorf("Ready() = true during the drain")
	}
	// The listener refuses new upgrades while draining.
	if c, _, err := dialer.Dial(ts.URL, nil); err == nil {
		_ = c.Close()
		t.Errorf("a new client was upgraded during the drain")
	}
	close(lateStart)

	select {
	case err := <-shutdownErr:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if err := ts.Wait(10 * time.Second); err != nil {
		t.Fatalf("after Shutdown: %v, want Run to return nil", err)
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.code != websocket.CloseGoingAway {
			t.Errorf("client saw close %d (%v), want 1001", r.code, r.err)
		}
		if len(r.goodbye) != 1 {
			t.Errorf("client got %d text messages before the close (%q), want one SERVER_SHUTDOWN", len(r.goodbye), r.goodbye)
			continue
		}
		var msg struct {
			Type          string `json:"type"`
			ReconnectInMs *int64 `json:"reconnectInMs"`
		}
		if err := json.Unmarshal([]byte(r.goodbye[0]), &msg); err != nil {
			t.Errorf("goodbye %q is not JSON: %v", r.goodbye[0], err)
			continue
		}
		if msg.Type != "SERVER_SHUTDOWN" || msg.ReconnectInMs == nil || *msg.ReconnectInMs != hint.Milliseconds() {
			t.Errorf("goodbye = %s, want {\"type\":\"SERVER_SHUTDOWN\",\"reconnectInMs\":%d}", r.goodbye[0], hint.Milliseconds())
		}
	}
}

// TestRestartAfterDrain checks that a server can listen at once on the port of one that
// just drained. The drain closes TCP from the server's side (RFC 6455 §7.1.1), which leaves
// those connections in TIME_WAIT on the listening port for a minute; without SO_REUSEADDR
// the next listener's bind fails with "address already in use", so a restart (systemd's
// Restart=, a deploy) would fail for that minute.
func TestRestartAfterDrain(t *testing.T) {
	ts := servertest.Start(t, server.Options{})
	c := dialGorilla(t, ts)
	go func() { // gorilla answers the server's close frame while reading
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	ts.WaitMetric(t, "ws_connections_active", 1)
	ts.Stop(t) // returns once the server has closed the connection, first
	// The client's FIN, second, moves the server's end from FIN_WAIT2 to TIME_WAIT.
	_ = c.Close()
	eventually(t, 5*time.Second, func() bool { return timeWaitOn(t, ts.Addr) > 0 }, func() string {
		return "no TIME_WAIT connection on " + ts.Addr + " after the drain: the test needs the server to close first"
	})
	ts2 := servertest.Start(t, server.Options{Listen: ts.Addr})
	c2 := dialGorilla(t, ts2)
	_ = c2.Close()
}

// timeWaitOn counts the IPv4 TCP connections in TIME_WAIT whose local end is addr
// (host:port), from /proc/net/tcp.
func timeWaitOn(t *testing.T, addr string) int {
	t.Helper()
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portStr)
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "06" { // 06: TIME_WAIT
			continue
		}
		if i := strings.LastIndexByte(f[1], ':'); i >= 0 {
			if p, err := strconv.ParseUint(f[1][i+1:], 16, 16); err == nil && int(p) == port {
				n++
			}
		}
	}
	return n
}
