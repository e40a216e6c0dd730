package server_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// TestHandshakeRejections sends malformed upgrade requests over real sockets and checks
// the HTTP status, the headers DESIGN.md promises, the failure counter's reason, that the
// server then closes the connection, and that it still serves a healthy client.
func TestHandshakeRejections(t *testing.T) {
	ts := servertest.Start(t, server.Options{})
	host := ts.Addr
	// without drops the header line that starts with name from a valid request.
	without := func(name string) string {
		var b strings.Builder
		for line := range strings.Lines(upgradeRequest(host)) {
			if !strings.HasPrefix(line, name+":") {
				b.WriteString(line)
			}
		}
		return b.String()
	}
	replace := func(old, new string) string { return strings.Replace(upgradeRequest(host), old, new, 1) }

	for _, tc := range []struct {
		name       string
		request    string
		wantStatus int
		wantReason string
		wantHeader map[string]string
	}{
		{
			name:       "POST",
			request:    replace("GET ", "POST "),
			wantStatus: http.StatusMethodNotAllowed,
			wantReason: "method",
			wantHeader: map[string]string{"Allow": "GET"},
		},
		{
			name:       "HTTP/1.0",
			request:    replace("HTTP/1.1", "HTTP/1.0"),
			wantStatus: http.StatusBadRequest,
			wantReason: "bad_request",
		},
		{
			name:       "missing Sec-WebSocket-Key",
			request:    without("Sec-WebSocket-Key"),
			wantStatus: http.StatusBadRequest,
			wantReason: "bad_request",
		},
		{
			name:       "bad Sec-WebSocket-Key",
			request:    replace(testKey, "not-base64-of-16-bytes!!"),
			wantStatus: http.StatusBadRequest,
			wantReason: "bad_request",
		},
		{
			name:       "Sec-WebSocket-Version 8",
			request:    replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
			wantStatus: http.StatusUpgradeRequired,
			wantReason: "version",
			wantHeader: map[string]string{"Sec-WebSocket-Version": "13"},
		},
		{
			name:       "missing Sec-WebSocket-Version",
			request:    without("Sec-WebSocket-Version"),
			wantStatus: http.StatusUpgradeRequired,
			wantReason: "version",
			wantHeader: map[string]string{"Sec-WebSocket-Version": "13"},
		},
		{
			name:       "missing Upgrade",
			request:    without("Upgrade"),
			wantStatus: http.StatusBadRequest,
			wantReason: "bad_request",
		},
		{
			name:       "missing Host",
			request:    without("Host"),
			wantStatus: http.StatusBadRequest,
			wantReason: "bad_request",
		},
		{
			name:       "head over 8 KiB",
			request:    replace("\r\n\r\n", "\r\nX-Filler: "+strings.Repeat("a", 9<<10)+"\r\n\r\n"),
			wantStatus: http.StatusRequestHeaderFieldsTooLarge,
			wantReason: "too_large",
		},
		{
			name:       "head over 8 KiB without an end",
			request:    "GET / HTTP/1.1\r\nX-Filler: " + strings.Repeat("a", 9<<10),
			wantStatus: http.StatusRequestHeaderFieldsTooLarge,
			wantReason: "too_large",
		},
		{
			// 8192 bytes and no CRLFCRLF: the head can no longer end within 8 KiB, so the
			// answer is due now, not at the handshake timeout.
			name:       "exactly 8 KiB without an end",
			request:    "GET / HTTP/1.1\r\nX-Filler: " + strings.Repeat("a", 8192-len("GET / HTTP/1.1\r\nX-Filler: ")),
			wantStatus: http.StatusRequestHeaderFieldsTooLarge,
			wantReason: "too_large",
		},
		{
			name:       "TLS ClientHello",
			request:    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + strings.Repeat("\x42", 40) + "\r\n\r\n",
			wantStatus: http.StatusBadRequest,
			wantReason: "bad_request",
		},
		{
			name:       "garbage",
			request:    "hello there\r\n\r\n",
			wantStatus: http.StatusBadRequest,
			wantReason: "bad_request",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := ts.Metrics(t)
			rc := dialRaw(t, ts)
			rc.write(t, []byte(tc.request))
			_ = rc.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(rc.br, nil)
			if err != nil {
				t.Fatalf("reading the response: %v", err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status = %d (%q), want %d", resp.StatusCode, body, tc.wantStatus)
			}
			for k, v := range tc.wantHeader {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			// The refusal ends the exchange: the server closes after the response.
			if err := rc.expectEOF(slack); err != nil {
				t.Errorf("after the %d response: %v", resp.StatusCode, err)
			}

			after := ts.Metrics(t)
			for _, reason := range upgradeReasons {
				want := before[upgradeSeries(reason)]
				if reason == tc.wantReason {
					want++
				}
				if got := after[upgradeSeries(reason)]; got != want {
					t.Errorf("%s = %v, want %v", upgradeSeries(reason), got, want)
				}
			}
			if got, want := after["ws_connections_opened_total"], before["ws_connections_opened_total"]; got != want {
				t.Errorf("ws_connections_opened_total went from %v to %v on a refused upgrade", want, got)
			}
			healthyEcho(t, ts)
		})
	}
}

// TestHandshakeSlowloris checks that a client that trickles a valid request one byte at
// a time is cut off at the handshake timeout, not when (or if) it finishes.
func TestHandshakeSlowloris(t *testing.T) {
	const timeout = 400 * time.Millisecond
	ts := servertest.Start(t, server.Options{HandshakeTimeout: timeout})
	rc := dialRaw(t, ts)
	start := time.Now()

	// The request would take 100 ms per byte, many seconds in all.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		req := []byte(upgradeRequest(ts.Addr))
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for _, b := range req {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := rc.Write([]byte{b}); err != nil {
				return
			}
		}
	})
	t.Cleanup(func() { close(stop); wg.Wait() })

	_ = rc.SetReadDeadline(time.Now().Add(timeout + slack))
	n, err := io.Copy(io.Discard, rc.br)
	elapsed := time.Since(start)
	if err != nil && !isClosedErr(err) {
		t.Fatalf("want the server to close within %v, got %v after %v", timeout+slack, err, elapsed)
	}
	if n != 0 {
		t.Errorf("server sent %d bytes to an unfinished request, want none", n)
	}
	if elapsed < timeout-50*time.Millisecond {
		t.Errorf("closed after %v, before the %v handshake timeout", elapsed, timeout)
	}
	ts.WaitMetric(t, upgradeSeries("timeout"), 1)
	if got := ts.Metric(t, "ws_connections_opened_total"); got != 0 {
		t.Errorf("ws_connections_opened_total = %v, want 0", got)
	}
}

// TestConcurrentHandshakes upgrades 1,000 gorilla clients at once (at most 200 dials in
// flight, so the listen backlog is not the thing under test), echoes once on each, then
// closes them all and waits for the server to forget every one.
func TestConcurrentHandshakes(t *testing.T) {
	const (
		clients  = 1000
		inFlight = 200
	)
	ts := servertest.Start(t, server.Options{})
	conns := make([]*websocket.Conn, clients)
	errs := make(chan error, clients)
	sem := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, _, err := dialer.Dial(ts.URL, nil)
			if err != nil {
				errs <- fmt.Errorf("client %d: dial: %w", i, err)
				return
			}
			conns[i] = c
			msg := fmt.Appendf(nil, "client %d", i)
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			_ = c.SetWriteDeadline(time.Now().Add(20 * time.Second))
			if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
				errs <- fmt.Errorf("client %d: write: %w", i, err)
				return
			}
			if _, got, err := c.ReadMessage(); err != nil || !bytes.Equal(got, msg) {
				errs <- fmt.Errorf("client %d: echo %q, %v", i, got, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	})
	failed := 0
	for err := range errs {
		if failed < 10 {
			t.Error(err)
		}
		failed++
	}
	if failed > 0 {
		t.Fatalf("%d of %d clients failed", failed, clients)
	}
	ts.WaitMetric(t, "ws_connections_active", clients)
	ts.WaitMetric(t, "ws_connections_opened_total", clients)

	// Half close cleanly, half just drop the TCP connection.
	for i, c := range conns {
		if i%2 == 0 {
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
				time.Now().Add(5*time.Second))
		}
		_ = c.Close()
	}
	ts.WaitMetric(t, "ws_connections_active", 0)
	ts.WaitMetric(t, "ws_connections_closed_total", clients)
	ts.WaitMetric(t, closeSeries("1000"), clients/2)
	ts.WaitMetric(t, closeSeries("1006"), clients/2)
}

// TestHandshakeHeadLimitBoundary checks the 8 KiB head limit at its edge: a valid request
// head of exactly 8192 bytes (final CRLFCRLF included) upgrades; one byte more is 431.
func TestHandshakeHeadLimitBoundary(t *testing.T) {
	ts := servertest.Start(t, server.Options{})
	// padded returns a valid upgrade request whose head is exactly n bytes.
	padded := func(n int) string {
		base := upgradeRequest(ts.Addr)
		const name = "X-Filler: "
		fill := n - len(base) - len(name) - len("\r\n")
		return strings.Replace(base, "\r\n\r\n", "\r\n"+name+strings.Repeat("a", fill)+"\r\n\r\n", 1)
	}
	for _, tc := range []struct {
		name       string
		size       int
		wantStatus int
	}{
		{name: "exactly 8 KiB", size: 8 << 10, wantStatus: http.StatusSwitchingProtocols},
		{name: "8 KiB plus one", size: 8<<10 + 1, wantStatus: http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := padded(tc.size)
			if len(req) != tc.size {
				t.Fatalf("built a %d-byte head, want %d", len(req), tc.size)
			}
			rc := dialRaw(t, ts)
			rc.write(t, []byte(req))
			_ = rc.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(rc.br, nil)
			if err != nil {
				t.Fatalf("reading the response: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if tc.wantStatus == http.StatusSwitchingProtocols {
				rc.write(t, clientFrame(codec.OpText, true, []byte("big head")))
				if _, got, err := rc.readMessage(10*time.Second, nil); err != nil || string(got) != "big head" {
					t.Fatalf("echo after an 8 KiB head = %q, %v", got, err)
				}
			}
		})
	}
}
