package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// TestMetricsFirstScrape checks that every series DESIGN.md names is exposed, zero, before
// any connection, so dashboards and alerts never see a missing series.
func TestMetricsFirstScrape(t *testing.T) {
	ts := servertest.Start(t, server.Options{})
	resp, err := httpClient.Get(ts.Admin + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain (Prometheus text format)", ct)
	}
	m, err := servertest.ParseMetrics(body)
	if err != nil {
		t.Fatalf("parsing: %v", err)
	}

	want := []string{
		"ws_connections_active",
		"ws_connections_opened_total",
		"ws_connections_closed_total",
		"ws_messages_received_total",
		"ws_messages_sent_total",
		"ws_messages_failed_total",
		"ws_send_buffer_bytes",
		"ws_zombies_reaped_total",
		"ws_slow_consumers_total",
	}
	for _, h := range []string{"ws_heartbeat_rtt_seconds", "ws_fanout_lag_seconds"} {
		want = append(want, h+`_bucket{le="+Inf"}`, h+"_sum", h+"_count")
	}
	// Every close code DESIGN.md lists.
	for _, code := range []string{"1000", "1001", "1002", "1003", "1007", "1008", "1009", "1011", "4000", "4001", "4003", "4029"} {
		want = append(want, closeSeries(code))
	}
	for _, reason := range upgradeReasons {
		want = append(want, upgradeSeries(reason))
	}
	for _, series := range want {
		v, ok := m[series]
		if !ok {
			t.Errorf("series %s missing from the first scrape", series)
			continue
		}
		if v != 0 {
			t.Errorf("%s = %v before any connection, want 0", series, v)
		}
	}
	// A histogram with only its +Inf bucket would break histogram_quantile: the finite
	// buckets must be there too, zero-valued.
	for _, h := range []string{"ws_heartbeat_rtt_seconds", "ws_fanout_lag_seconds"} {
		finite := 0
		for series := range m {
			if strings.HasPrefix(series, h+`_bucket{le="`) && series != h+`_bucket{le="+Inf"}` {
				finite++
			}
		}
		if finite == 0 {
			t.Errorf("%s has no finite buckets", h)
		}
	}
}

// TestAdminEndpoints checks the health, readiness and profiling endpoints while running.
func TestAdminEndpoints(t *testing.T) {
	ts := servertest.Start(t, server.Options{})
	for _, tc := range []struct {
		name       string
		method     string
		path       string
		wantStatus int
	}{
		{name: "healthz", method: http.MethodGet, path: "/healthz", wantStatus: http.StatusOK},
		{name: "readyz while running", method: http.MethodGet, path: "/readyz", wantStatus: http.StatusOK},
		{name: "pprof index", method: http.MethodGet, path: "/debug/pprof/", wantStatus: http.StatusOK},
		{name: "pprof goroutine", method: http.MethodGet, path: "/debug/pprof/goroutine?debug=1", wantStatus: http.StatusOK},
		{name: "metrics", method: http.MethodGet, path: "/metrics", wantStatus: http.StatusOK},
		{name: "broadcast is POST only", method: http.MethodGet, path: "/v1/broadcast", wantStatus: http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, ts.Admin+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.method, tc.path, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.wantStatus)
			}
		})
	}
}

// TestMessageCounters checks that one connection's life shows up in the counters: opened,
// active, one message each way, then a normal close.
func TestMessageCounters(t *testing.T) {
	ts := servertest.Start(t, server.Options{})
	c := dialGorilla(t, ts)
	ts.WaitMetric(t, "ws_connections_active", 1)
	ts.WaitMetric(t, "ws_connections_opened_total", 1)
	for range 3 {
		assertEcho(t, c, websocket.BinaryMessage, []byte("count me"))
	}
	ts.WaitMetric(t, "ws_messages_received_total", 3)
	ts.WaitMetric(t, "ws_messages_sent_total", 3)
	if got := ts.Metric(t, "ws_messages_failed_total"); got != 0 {
		t.Errorf("ws_messages_failed_total = %v, want 0", got)
	}
	if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
		deadlineIn(5)); err != nil {
		t.Fatalf("writing close: %v", err)
	}
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("after close: %v, want the echoed close 1000", err)
	}
	ts.WaitMetric(t, "ws_connections_active", 0)
	ts.WaitMetric(t, "ws_connections_closed_total", 1)
	ts.WaitMetric(t, closeSeries("1000"), 1)
}
