package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// deadlineIn returns a deadline s seconds from now.
func deadlineIn(s int) time.Time { return time.Now().Add(time.Duration(s) * time.Second) }

// postJSON posts body to the admin path and returns the status, Content-Type and body.
func postJSON(t testing.TB, ts *servertest.Server, path, body string) (int, string, []byte) {
	t.Helper()
	resp, err := httpClient.Post(ts.Admin+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

// TestBroadcastEcho checks POST /v1/broadcast under -app echo: every connected client
// gets the data as one text frame with no envelope, a JSON string's contents or other
// JSON exactly as it appeared in the body, once.
func TestBroadcastEcho(t *testing.T) {
	const clients = 50
	ts := servertest.Start(t, server.Options{})
	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		conns[i] = dialGorilla(t, ts)
	}
	// The 101 is written on the loop before the connection is marked open; wait until the
	// server counts them all, so the broadcast cannot race the last upgrades.
	ts.WaitMetric(t, "ws_connections_active", clients)

	for _, tc := range []struct {
		name string
		body string
		want string
	}{
		{name: "string", body: `{"data":"hello"}`, want: "hello"},
		{name: "string with escapes", body: `{"data":"line\n\"quoted\" \u00e9"}`, want: "line\n\"quoted\" é"},
		{name: "object", body: `{"data":{"a":1}}`, want: `{"a":1}`},
		{name: "object kept byte for byte", body: `{"data": {"b": [1, 2.50, "x"],  "a":1} }`, want: `{"b": [1, 2.50, "x"],  "a":1}`},
		{name: "number", body: `{"data":42}`, want: `42`},
		{name: "empty string", body: `{"data":""}`, want: ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := postJSON(t, ts, "/v1/broadcast", tc.body)
			if status != http.StatusAccepted {
				t.Fatalf("POST /v1/broadcast %s = %d %s, want 202", tc.body, status, body)
			}
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for i, c := range conns {
				wg.Go(func() {
					_ = c.SetReadDeadline(deadlineIn(10))
					op, got, err := c.ReadMessage()
					switch {
					case err != nil:
						errs <- fmt.Errorf("client %d: %w", i, err)
					case op != websocket.TextMessage || string(got) != tc.want:
						errs <- fmt.Errorf("client %d got type %d %q, want text %q", i, op, got, tc.want)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}

	// Exactly once: an echo round trip on each client must come back next, with no
	// duplicate broadcast ahead of it.
	for i, c := range conns {
		msg := fmt.Appendf(nil, "after broadcasts %d", i)
		assertEcho(t, c, websocket.TextMessage, msg)
	}
}

// TestBroadcastBadBodies checks that a broadcast with a bad body is refused with 400 and
// a JSON error, and that no client receives anything.
func TestBroadcastBadBodies(t *testing.T) {
	ts := servertest.Start(t, server.Options{})
	c := dialGorilla(t, ts)
	ts.WaitMetric(t, "ws_connections_active", 1)
	for _, tc := range []struct {
		name string
		body string
	}{
		{name: "not JSON", body: `{`},
		{name: "empty body", body: ``},
		{name: "missing data", body: `{}`},
		{name: "other field only", body: `{"channel":"x"}`},
		{name: "array", body: `[1,2]`},
		{name: "bad string escape", body: `{"data":"\x"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, ct, body := postJSON(t, ts, "/v1/broadcast", tc.body)
			if status != http.StatusBadRequest {
				t.Errorf("POST %q = %d %s, want 400", tc.body, status, body)
			}
			if !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			var e map[string]any
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("error body %q is not JSON: %v", body, err)
			}
			if msg, _ := e["error"].(string); msg == "" {
				t.Errorf("error body %s has no \"error\" field", body)
			}
		})
	}
	// Nothing was broadcast: the next message the client reads is its own echo, and the
	// echo is the only message sent (the loop counts it just after writing it, so poll).
	assertEcho(t, c, websocket.TextMessage, []byte("nothing before me"))
	ts.WaitMetric(t, "ws_messages_sent_total", 1)
}
