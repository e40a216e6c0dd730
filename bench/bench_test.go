package bench_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wsreactor/wsreactor/bench"
	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// The swarm is tested against a real server in this process (test-only imports do not
// count against DESIGN.md's layout, which keeps bench's non-test files off server), and
// every count the swarm reports is checked against what the server counted on /metrics.
// Scales are small and every wait is generous: these run under -race on two shared cores.

// pollFor bounds every poll of the server's counters.
const pollFor = 10 * time.Second

// source is where the tests' sockets come from: loopback addresses of their own, so
// ephemeral ports held in TIME_WAIT on 127.0.0.1 by whatever else runs on the machine
// cannot starve the dials (each source address has its own port range), and so the
// swarm's source rotation is exercised.
const source = "127.0.44.1-127.0.44.8"

// httpClient fetches /readyz from server processes.
var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// runSwarm runs cfg in process and fails the test on an error.
func runSwarm(t testing.TB, cfg bench.Config) *bench.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if cfg.Source == "" {
		cfg.Source = source
	}
	start := time.Now()
	r, err := bench.Run(ctx, cfg, "", nil)
	if err != nil {
		t.Fatalf("bench.Run(%s): %v", cfg.Scenario, err)
	}
	if r == nil {
		t.Fatalf("bench.Run(%s) returned no report", cfg.Scenario)
	}
	t.Logf("%s: %d conns in %.2fs: opened %d failed %d %v, errors %d lost %d, %.0f msgs/s, latency p50 %.2f ms",
		cfg.Scenario, r.Conns, time.Since(start).Seconds(), r.Connect.Opened, r.Connect.Failed, r.Connect.ByCause,
		r.Errors, r.Lost, r.MsgsPerS, r.LatencyMs.P50)
	return r
}

// checkConnected asserts the ramp opened every socket without a failure.
func checkConnected(t testing.TB, r *bench.Report, conns int) {
	t.Helper()
	if r.Scenario == "" || r.Conns != conns {
		t.Errorf("report scenario %q conns %d, want conns %d", r.Scenario, r.Conns, conns)
	}
	if r.Connect.Opened != int64(conns) || r.Connect.Failed != 0 || r.Errors != 0 {
		t.Fatalf("connect: opened %d failed %d (%v) errors %d, want %d opened and no failure",
			r.Connect.Opened, r.Connect.Failed, r.Connect.ByCause, r.Errors, conns)
	}
}

// TestConnect ramps 300 sockets at 1000/s: every one opens, the server counted the same
// 300, the ramp was paced, and Stop closes them all.
func TestConnect(t *testing.T) {
	const conns = 300
	ts := servertest.Start(t, server.Options{App: server.AppEcho})
	r := runSwarm(t, bench.Config{Scenario: bench.ScenarioConnect, URL: ts.URL, Admin: ts.Admin, Conns: conns, Rate: 1000})

	checkConnected(t, r, conns)
	if r.Connect.Attempted != conns || r.Open != conns {
		t.Errorf("attempted %d, open at end %d, want %d each", r.Connect.Attempted, r.Open, conns)
	}
	// Connect i is due at i/rate, so the last one cannot start before 299 ms.
	if minRamp := float64(conns-1) / 1000; r.Connect.RampS < minRamp*0.95 {
		t.Errorf("ramp took %.3fs, want at least %.3fs at 1000/s", r.Connect.RampS, minRamp)
	}
	if r.Connect.LatencyMs.P50 <= 0 || r.Connect.LatencyMs.Max < r.Connect.LatencyMs.P50 {
		t.Errorf("connect latency %+v, want 0 < p50 <= max", r.Connect.LatencyMs)
	}
	if r.LatencyMs != r.Connect.LatencyMs || r.MsgsPerS != r.Connect.RatePerS || r.MsgsPerS <= 0 {
		t.Errorf("top level latency %+v msgs/s %.0f, want the connect figures %+v %.0f",
			r.LatencyMs, r.MsgsPerS, r.Connect.LatencyMs, r.Connect.RatePerS)
	}
	if got := ts.Metric(t, "ws_connections_opened_total"); got != conns {
		t.Errorf("server ws_connections_opened_total = %v, want %d", got, conns)
	}
	if r.Server == nil || r.Server.MetricsAfter["ws_connections_opened_total"] != conns {
		t.Errorf("report's server metrics after the run = %+v, want ws_connections_opened_total %d", r.Server, conns)
	}
	ts.WaitMetric(t, "ws_connections_active", 0)
	ts.WaitMetric(t, "ws_connections_closed_total", conns)
	if got := ts.Metric(t, `ws_upgrade_failures_total{reason="bad_request"}`); got != 0 {
		t.Errorf("server upgrade failures (bad_request) = %v, want 0", got)
	}
}

// TestIdle holds 200 sockets through several heartbeats: none is reaped, and every ping
// the swarm answered shows as a pong (an RTT sample) on the server.
func TestIdle(t *testing.T) {
	const conns = 200
	ts := servertest.Start(t, server.Options{App: server.AppEcho, Heartbeat: 200 * time.Millisecond, IdleTimeout: time.Second})
	r := runSwarm(t, bench.Config{Scenario: bench.ScenarioIdle, URL: ts.URL, Admin: ts.Admin, Conns: conns, Duration: 1500 * time.Millisecond})

	checkConnected(t, r, conns)
	if r.Idle == nil {
		t.Fatal("idle report section is missing")
	}
	if r.Idle.Kept != conns || r.Idle.ClosedByServer != 0 || r.Lost != 0 {
		t.Errorf("idle: kept %d closed by server %d lost %d, want %d kept and none lost", r.Idle.Kept, r.Idle.ClosedByServer, r.Lost, conns)
	}
	// 1.5 s at a 200 ms heartbeat is about seven pings a socket; every socket gets one.
	if r.Idle.Pings < conns {
		t.Errorf("pings answered = %d, want at least one per socket (%d)", r.Idle.Pings, conns)
	}
	ts.WaitMetric(t, "ws_connections_active", 0)
	// Each pong the server read is one RTT sample. Pongs still in flight when the swarm
	// closed its sockets (at most one per socket) may never be read.
	rtt := int64(ts.Metric(t, "ws_heartbeat_rtt_seconds_count"))
	if rtt > r.Idle.Pings || rtt < r.Idle.Pings-conns {
		t.Errorf("server ws_heartbeat_rtt_seconds_count = %d, want within [%d, %d] (pings answered %d, at most one in flight per socket)",
			rtt, r.Idle.Pings-conns, r.Idle.Pings, r.Idle.Pings)
	}
	for _, series := range []string{"ws_zombies_reaped_total", `ws_close_total{code="4001"}`} {
		if got := ts.Metric(t, series); got != 0 {
			t.Errorf("server %s = %v, want 0: an answering socket was reaped", series, got)
		}
	}
}

// TestEcho runs echo closed loop (every socket keeps one message in flight) and open loop
// (a fixed rate): nothing is lost, and the server's message counters match the swarm's.
func TestEcho(t *testing.T) {
	const conns = 50
	t.Run("closed", func(t *testing.T) {
		ts := servertest.Start(t, server.Options{App: server.AppEcho})
		r := runSwarm(t, bench.Config{Scenario: bench.ScenarioEcho, URL: ts.URL, Admin: ts.Admin, Conns: conns, Duration: 1500 * time.Millisecond, Size: 64})
		checkConnected(t, r, conns)
		checkEcho(t, ts, r, "closed")
		if r.Echo.Sent < conns {
			t.Errorf("closed loop sent %d, want at least one per socket", r.Echo.Sent)
		}
	})
	t.Run("open", func(t *testing.T) {
		const rate, d = 2000, 1500 * time.Millisecond
		ts := servertest.Start(t, server.Options{App: server.AppEcho})
		r := runSwarm(t, bench.Config{Scenario: bench.ScenarioEcho, URL: ts.URL, Admin: ts.Admin, Conns: conns, Duration: d, Size: 64, Rate: rate})
		checkConnected(t, r, conns)
		checkEcho(t, ts, r, "open")
		want := rate * d.Seconds()
		if got := float64(r.Echo.Received); got < want*0.8 || got > want*1.2 {
			t.Errorf("open loop at %d/s for %v: received %v, want %v ± 20%%", rate, d, got, want)
		}
		// msgs_per_s is over the sending window, not the wait for the last replies.
		if r.MsgsPerS < rate*0.8 || r.MsgsPerS > rate*1.2 {
			t.Errorf("open loop at %d/s: msgs_per_s %.0f, want %d ± 20%%", rate, r.MsgsPerS, rate)
		}
	})
}

func checkEcho(t *testing.T, ts *servertest.Server, r *bench.Report, mode string) {
	t.Helper()
	e := r.Echo
	if e == nil {
		t.Fatal("echo report section is missing")
	}
	if e.Mode != mode {
		t.Errorf("echo mode %q, want %q", e.Mode, mode)
	}
	if e.Sent == 0 || e.Sent != e.Received || r.Lost != 0 {
		t.Errorf("echo sent %d received %d lost %d, want equal and none lost", e.Sent, e.Received, r.Lost)
	}
	if r.MsgsPerS <= 0 || r.LatencyMs.P50 <= 0 || r.LatencyMs.Max < r.LatencyMs.P99 {
		t.Errorf("echo msgs/s %.0f latency %+v, want positive and ordered", r.MsgsPerS, r.LatencyMs)
	}
	ts.WaitMetric(t, "ws_messages_received_total", float64(e.Sent))
	ts.WaitMetric(t, "ws_messages_sent_total", float64(e.Received))
}

// TestBroadcast publishes 5 messages to 300 sockets, through /v1/broadcast on an echo
// server and through /v1/publish to a channel on a pub/sub server: all 1500 deliveries
// arrive, and the server wrote exactly those (plus pub/sub's welcome and subscribed).
func TestBroadcast(t *testing.T) {
	const conns, messages = 300, 5
	for _, tc := range []struct {
		name, app, channel, publish string
		perSocket                   float64 // server messages a socket gets besides the publishes
		extra                       float64 // server messages to the publisher's own socket
	}{
		{name: "echo", app: server.AppEcho},
		{name: "pubsub-channel", app: server.AppPubSub, channel: "bench", perSocket: 2},                                            // welcome, subscribed
		{name: "pubsub-client-pub", app: server.AppPubSub, channel: "bench", publish: bench.PublishClient, perSocket: 2, extra: 1}, // its welcome
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := servertest.Start(t, server.Options{App: tc.app})
			r := runSwarm(t, bench.Config{
				Scenario: bench.ScenarioBroadcast, URL: ts.URL, Admin: ts.Admin, Conns: conns,
				Messages: messages, Channel: tc.channel, Publish: tc.publish, Wait: pollFor,
			})
			checkConnected(t, r, conns)
			b := r.Broadcast
			if b == nil {
				t.Fatal("broadcast report section is missing")
			}
			if b.Messages != messages || b.Receivers != conns || b.PublishFails != 0 {
				t.Errorf("broadcast: messages %d receivers %d publish failures %d, want %d, %d, 0", b.Messages, b.Receivers, b.PublishFails, messages, conns)
			}
			if b.Expected != conns*messages || b.Received != b.Expected || r.Lost != 0 {
				t.Errorf("broadcast: received %d of %d expected, lost %d; want all %d", b.Received, b.Expected, r.Lost, conns*messages)
			}
			if r.LatencyMs.P50 <= 0 || b.LastMsMax < b.LastMsP50 || b.LastMsP50 <= 0 {
				t.Errorf("broadcast latency %+v, time to last delivery p50 %.2f max %.2f: want positive and ordered", r.LatencyMs, b.LastMsP50, b.LastMsMax)
			}
			ts.WaitMetric(t, "ws_messages_sent_total", conns*messages+tc.perSocket*conns+tc.extra)
			if got := ts.Metric(t, "ws_messages_failed_total"); got != 0 {
				t.Errorf("server ws_messages_failed_total = %v, want 0", got)
			}
		})
	}
}

// TestBroadcastClientPubRefused publishes through a client pub faster than the server's
// channel rate allows: the refused messages (error frames) are counted as publish
// failures and errors, exactly as many as the server refused, and every message it took
// reaches every socket, so nothing counts as lost.
func TestBroadcastClientPubRefused(t *testing.T) {
	const conns, messages = 50, 6
	ts := servertest.Start(t, server.Options{App: server.AppPubSub, ChannelRate: 1}) // a burst of 2
	r := runSwarm(t, bench.Config{
		Scenario: bench.ScenarioBroadcast, URL: ts.URL, Admin: ts.Admin, Conns: conns,
		Messages: messages, Rate: 50, Channel: "bench", Publish: bench.PublishClient, Wait: pollFor,
	})
	b := r.Broadcast
	if b == nil {
		t.Fatal("broadcast report section is missing")
	}
	refused := ts.Metric(t, "ws_channel_rate_limited_total")
	if refused < 1 || float64(b.PublishFails) != refused || r.Errors != int64(b.PublishFails) {
		t.Errorf("publish failures %d, errors %d; server refused %v: want equal and at least 1", b.PublishFails, r.Errors, refused)
	}
	if want := int64(conns * (messages - b.PublishFails)); b.Expected != want || b.Received != want || r.Lost != 0 {
		t.Errorf("broadcast: received %d of %d expected, lost %d; want %d of %d, none lost", b.Received, b.Expected, r.Lost, want, want)
	}
}

// TestChurn closes and reopens 100 sockets a second for 1.5 s: the churned count follows
// the rate, and the server opened exactly the first sockets plus each replacement.
func TestChurn(t *testing.T) {
	const conns, rate, d = 100, 100, 1500 * time.Millisecond
	ts := servertest.Start(t, server.Options{App: server.AppEcho})
	r := runSwarm(t, bench.Config{Scenario: bench.ScenarioChurn, URL: ts.URL, Admin: ts.Admin, Conns: conns, Rate: rate, Duration: d})

	// The first connects all open; a replacement that does not is an error of the run.
	if r.Connect.Opened != conns || r.Errors != r.Connect.Failed || r.Lost != 0 {
		t.Errorf("opened %d first connects, errors %d for %d failed replacements (%v), lost %d; want %d, equal, 0",
			r.Connect.Opened, r.Errors, r.Connect.Failed, r.Connect.ByCause, r.Lost, conns)
	}
	c := r.Churn
	if c == nil {
		t.Fatal("churn report section is missing")
	}
	want := rate * d.Seconds()
	if got := float64(c.Churned); got < want*0.6 || got > want*1.4 {
		t.Errorf("churned %v in %v at %d/s, want %v ± 40%%", got, d, rate, want)
	}
	// Every churned socket got a replacement that opened or failed (first connects all
	// opened, so every failure is a replacement's), and Stop waited for them to end.
	failedReplacements := r.Connect.Failed
	replaced := c.Churned - failedReplacements
	if r.Open != conns-failedReplacements {
		t.Errorf("open at end %d, want %d (%d replacements failed: %v)", r.Open, conns-failedReplacements, failedReplacements, r.Connect.ByCause)
	}
	// A replacement that found the dial queue full was never dialled.
	if queueFull := r.Connect.ByCause["dial_queue_full"]; r.Connect.Attempted != conns+c.Churned-queueFull {
		t.Errorf("attempted %d dials, want %d first + %d replacements - %d not queued", r.Connect.Attempted, conns, c.Churned, queueFull)
	}
	ts.WaitMetric(t, "ws_connections_opened_total", float64(conns+replaced))
	ts.WaitMetric(t, "ws_connections_active", 0)
	ts.WaitMetric(t, "ws_connections_closed_total", float64(conns+replaced))
}

// TestReconnect runs two pub/sub servers on one port with SO_REUSEPORT, so the kernel
// spreads the swarm's sockets over both, then drains one (what SIGTERM does): every
// socket it had is disconnected, and each reconnects (to the survivor) after the
// SERVER_SHUTDOWN hint plus jitter.
func TestReconnect(t *testing.T) {
	const conns = 300
	const hint = 100 * time.Millisecond
	port := freePort(t)
	opts := server.Options{Listen: "127.0.0.1:" + strconv.Itoa(port), App: server.AppPubSub, ReusePort: true, ReconnectHint: hint}
	a, b := servertest.Start(t, opts), servertest.Start(t, opts)

	type result struct {
		r   *bench.Report
		err error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		r, err := bench.Run(ctx, bench.Config{
			Scenario: bench.ScenarioReconnect, URL: a.URL, Conns: conns, Duration: 5 * time.Second, Source: source,
			BackoffBase: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		}, "", nil)
		done <- result{r, err}
	}()

	var onA, onB float64
	deadline := time.Now().Add(pollFor)
	for {
		onA, onB = a.Metric(t, "ws_connections_active"), b.Metric(t, "ws_connections_active")
		if onA+onB == conns {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sockets on the two servers: %v + %v, want %d (waited %v)", onA, onB, conns, pollFor)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if onA == 0 || onB == 0 {
		// SO_REUSEPORT hashes each connect's 4-tuple over all listeners; 300 connects
		// landing on one server is chance on the order of 2^-300.
		t.Fatalf("SO_REUSEPORT put %v sockets on A and %v on B, want both used", onA, onB)
	}
	t.Logf("before the drain: %v sockets on A, %v on B", onA, onB)
	// The drain paces A's closes over half of Shutdown's 3 s; the rest covers stopping the
	// engine (gnet polls for that every 500 ms). The swarm's 5 s leaves time to reconnect.
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		shut <- a.Shutdown(ctx)
	}()

	res := <-done
	if res.err != nil {
		t.Fatalf("bench.Run(reconnect): %v", res.err)
	}
	if err := <-shut; err != nil {
		t.Errorf("drain of A: %v", err)
	}
	r := res.r
	if r.Connect.Opened != conns || r.Errors != 0 {
		t.Fatalf("first connects: opened %d errors %d, want %d and none", r.Connect.Opened, r.Errors, conns)
	}
	// Connect.Failed counts failed reconnect dials too: while A drains, a reconnect the
	// kernel hands to one of A's listeners is closed on arrival or reset; it backs off and
	// tries again.
	var byCause int64
	for cause, n := range r.Connect.ByCause {
		byCause += n
		if cause != "closed_during_handshake" && cause != "reset" && cause != "refused" {
			t.Errorf("reconnect dials failed with %q (%d), want only what a draining node causes", cause, n)
		}
	}
	if byCause != r.Connect.Failed {
		t.Errorf("failures by cause %v sum to %d, want Failed %d", r.Connect.ByCause, byCause, r.Connect.Failed)
	}
	rc := r.Reconnect
	if rc == nil {
		t.Fatal("reconnect report section is missing")
	}
	t.Logf("reconnect: disconnected %d reconnected %d, failed dials %d %v, latency %+v, curve %v",
		rc.Disconnected, rc.Reconnected, r.Connect.Failed, r.Connect.ByCause, r.LatencyMs, rc.Curve)
	if rc.Disconnected != int64(onA) || rc.Reconnected != rc.Disconnected || r.Lost != 0 {
		t.Errorf("disconnected %d reconnected %d lost %d, want %v each reconnected and none lost", rc.Disconnected, rc.Reconnected, r.Lost, onA)
	}
	if r.Open != conns {
		t.Errorf("open at end %d, want %d", r.Open, conns)
	}
	var curve int64
	for i, p := range rc.Curve {
		curve += p.N
		if i > 0 && p.TMs <= rc.Curve[i-1].TMs {
			t.Errorf("curve is not in time order: %v", rc.Curve)
		}
	}
	if len(rc.Curve) == 0 || curve != rc.Reconnected {
		t.Errorf("reconnect curve %v sums to %d, want a non-empty curve summing to %d", rc.Curve, curve, rc.Reconnected)
	}
	// Each socket waits at least the SERVER_SHUTDOWN hint before it redials.
	if min := float64(hint / time.Millisecond); r.LatencyMs.P50 < min {
		t.Errorf("reconnect latency p50 %.1f ms, want at least the %v hint", r.LatencyMs.P50, hint)
	}
	// B took every reconnect: its first share plus A's.
	b.WaitMetric(t, "ws_connections_opened_total", conns)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// BenchmarkClientMemory opens 5,000 idle client sockets with one Worker and reports what
// each costs the swarm: Go heap and stacks in use (after a GC) and process RSS, per
// socket. The server runs as a separate process so this process holds the swarm alone.
// The figures include the worker's fixed cost (event loops, dialers) spread over the
// sockets.
//
//	go test -run='^$' -bench=ClientMemory -benchtime=1x ./bench/
func BenchmarkClientMemory(b *testing.B) {
	const conns = 5000
	srv := startServerProcess(b)
	for b.Loop() {
		heap0, rss0 := memInUse(), vmRSS(b)
		srcs, err := bench.ParseSources(source)
		if err != nil {
			b.Fatal(err)
		}
		w, err := bench.NewWorker(bench.Config{Scenario: bench.ScenarioIdle, URL: srv.url, Conns: conns, Dialers: 16}, conns, srcs)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		if err := w.Start(ctx); err != nil {
			b.Fatal(err)
		}
		select {
		case <-w.Ready():
		case <-time.After(time.Minute):
			b.Fatal("5,000 sockets did not open within a minute")
		}
		if p := w.Progress(); p.Open != conns || p.Failed != 0 {
			b.Fatalf("open %d failed %d, want %d open", p.Open, p.Failed, conns)
		}
		heap1, rss1 := memInUse(), vmRSS(b)
		r := w.Stop()
		cancel()
		runtime.KeepAlive(r)
		perConn := float64(heap1-heap0) / conns
		b.ReportMetric(perConn, "heap+stack-B/conn")
		b.ReportMetric(float64(rss1-rss0)/conns, "rss-B/conn")
		// The package promises about a kilobyte a socket; 2 KiB is the line it must not cross.
		if perConn > 2048 {
			b.Errorf("an idle client socket costs %.0f B of heap and stack, want at most 2048", perConn)
		}
	}
}

// memInUse is the heap and stack bytes in use after a full collection.
func memInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// vmRSS is this process's resident set in bytes, from /proc/self/status.
func vmRSS(tb testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	tb.Skip("no VmRSS in /proc/self/status")
	return 0
}

// serverProcess is a wsreactor binary running beside the test.
type serverProcess struct{ url, admin string }

// startServerProcess builds ./cmd/wsreactor and runs it as an echo server on free
// loopback ports until the benchmark ends.
func startServerProcess(tb testing.TB) *serverProcess {
	tb.Helper()
	exe := filepath.Join(tb.TempDir(), "wsreactor")
	build := exec.Command("go", "build", "-o", exe, "../cmd/wsreactor")
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("go build ./cmd/wsreactor: %v\n%s", err, out)
	}
	listen, admin := "127.0.0.1:"+strconv.Itoa(freePort(tb)), "127.0.0.1:"+strconv.Itoa(freePort(tb))
	cmd := exec.Command(exe, "-listen", listen, "-admin", admin, "-app", "echo")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(pollFor)
	for {
		resp, err := httpClient.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			tb.Fatalf("wsreactor exited: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("wsreactor not ready within %v\n%s", pollFor, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &serverProcess{url: "ws://" + listen + "/", admin: "http://" + admin}
}

// TestServerGoneMidRun drains the server while echo (open loop) and churn run: the
// sockets it closes count (echo: errors, nothing being in flight between sends; churn:
// lost), and so do the churn replacements it refuses, instead of a clean report.
func TestServerGoneMidRun(t *testing.T) {
	const conns = 30
	for _, tc := range []struct {
		scenario string
		rate     float64
	}{{bench.ScenarioEcho, 20}, {bench.ScenarioChurn, 20}} {
		t.Run(tc.scenario, func(t *testing.T) {
			ts := servertest.Start(t, server.Options{App: server.AppEcho, DrainTimeout: 200 * time.Millisecond})
			done := make(chan *bench.Report, 1)
			go func() {
				r, _ := bench.Run(context.Background(), bench.Config{
					Scenario: tc.scenario, URL: ts.URL, Conns: conns, Rate: tc.rate, Duration: 3 * time.Second, Source: source,
				}, "", nil)
				done <- r
			}()
			ts.WaitMetric(t, "ws_connections_active", conns)
			ts.Stop(t)
			r := <-done
			if r == nil {
				t.Fatal("no report")
			}
			t.Logf("%s: errors %d lost %d, open at end %d", tc.scenario, r.Errors, r.Lost, r.Open)
			if r.Open != 0 {
				t.Errorf("open at end %d, want 0 (the server is gone)", r.Open)
			}
			switch tc.scenario {
			case bench.ScenarioEcho:
				if r.Errors < conns {
					t.Errorf("echo: errors %d, want at least the %d sockets the server closed", r.Errors, conns)
				}
			case bench.ScenarioChurn:
				if r.Lost+r.Churn.Churned < conns || r.Lost == 0 {
					t.Errorf("churn: lost %d churned %d, want the sockets the server closed counted lost", r.Lost, r.Churn.Churned)
				}
			}
		})
	}
}

// TestRefusedChannel subscribes every socket to a channel name the server refuses: the
// ramp still ends (it waited forever for confirmations before), and each refusal is an
// error of the run.
func TestRefusedChannel(t *testing.T) {
	const conns = 5
	ts := servertest.Start(t, server.Options{App: server.AppPubSub})
	r := runSwarm(t, bench.Config{Scenario: bench.ScenarioIdle, URL: ts.URL, Conns: conns, Duration: 200 * time.Millisecond, Channel: "a*b"})
	if r.Errors != conns || r.Connect.Opened != conns {
		t.Errorf("opened %d, errors %d; want %d opened and each sub's refusal an error", r.Connect.Opened, r.Errors, conns)
	}
}
