package servertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsreactor/wsreactor/server"
)

// Generous bounds: the tests run under -race on two shared cores, next to other test
// processes, where a 10 ms wheel tick can be late by seconds. Only a failing test waits
// them out.
const (
	startWithin = 15 * time.Second // for Started after Run
	stopWithin  = 30 * time.Second // for Shutdown, and again for Run to return after it
	// PollFor bounds WaitMetric.
	PollFor = 15 * time.Second
)

// Server is a server.Server running in the test's process.
type Server struct {
	*server.Server
	Addr  string // host:port of the WebSocket listener
	URL   string // ws://Addr/
	Admin string // http://host:port of the admin listener

	runDone chan struct{} // closed when Run has returned
	runErr  error         // what Run returned; read after runDone
	stopped atomic.Bool
}

// Start starts a server with opts, Listen and Admin on 127.0.0.1 ports the kernel picks,
// App echo and a discarding Logger where opts leaves them empty; it returns once both
// listeners are up. A cleanup registered on t stops it (see Stop); cleanups run last in,
// first out, so clients registered after Start close before the server shuts down.
func Start(t testing.TB, opts server.Options) *Server {
	t.Helper()
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.Admin == "" {
		opts.Admin = "127.0.0.1:0"
	}
	if opts.App == "" {
		opts.App = server.AppEcho
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv, err := server.New(opts)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	s := &Server{Server: srv, runDone: make(chan struct{})}
	go func() {
		s.runErr = srv.Run(context.Background())
		close(s.runDone)
	}()
	select {
	case <-srv.Started():
	case <-s.runDone:
		t.Fatalf("Run returned before the server started: %v", s.runErr)
	case <-time.After(startWithin):
		t.Fatalf("server did not start within %v", startWithin)
	}
	s.Addr = srv.Addr().String()
	s.URL = "ws://" + s.Addr + "/"
	s.Admin = "http://" + srv.AdminAddr().String()
	t.Cleanup(func() { s.Stop(t) })
	return s
}

// Stop shuts the server down (a drain, when it holds sockets) and fails the test unless
// Run then returns nil; calls after the first do nothing.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if s.stopped.Swap(true) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopWithin)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := s.Wait(stopWithin); err != nil {
		t.Errorf("Run: %v", err)
	}
}

// Done is closed when Run has returned, after Stop or on its own (a failed engine).
func (s *Server) Done() <-chan struct{} { return s.runDone }

// Wait waits at most d for Run to return and returns what it returned.
func (s *Server) Wait(d time.Duration) error {
	select {
	case <-s.runDone:
		return s.runErr
	case <-time.After(d):
		return fmt.Errorf("Run did not return within %v", d)
	}
}

// client talks to admin listeners. Keep-alives are off so that no idle connection
// goroutine outlives a request (leak tests count goroutines).
var client = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

// Scrape fetches adminURL/metrics and returns every sample keyed by its series as written
// ("name" or `name{label="v"}`), histogram _count and _sum included.
func Scrape(adminURL string) (map[string]float64, error) {
	resp, err := client.Get(adminURL + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading /metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s: %s", resp.Status, body)
	}
	return ParseMetrics(body)
}

// ParseMetrics parses the Prometheus text exposition: one "series value" a line, comments
// and blank lines skipped. A line without a number is an error, not skipped: the format
// is part of the contract.
func ParseMetrics(body []byte) (map[string]float64, error) {
	m := make(map[string]float64)
	for line := range strings.Lines(string(body)) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("line without a value: %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("line %q: %w", line, err)
		}
		m[line[:i]] = v
	}
	return m, nil
}

// Metrics scrapes s, failing the test when it cannot.
func (s *Server) Metrics(t testing.TB) map[string]float64 {
	t.Helper()
	m, err := Scrape(s.Admin)
	if err != nil {
		t.Fatalf("scrape %s: %v", s.Admin, err)
	}
	return m
}

// Metric returns one series from a fresh scrape. A series that is absent fails the test:
// DESIGN.md has every name exposed from the first scrape.
func (s *Server) Metric(t testing.TB, series string) float64 {
	t.Helper()
	v, ok := s.Metrics(t)[series]
	if !ok {
		t.Fatalf("series %s is not on %s/metrics", series, s.Admin)
	}
	return v
}

// WaitMetric polls series until it equals want, failing the test with the last value
// after PollFor. A series not yet on /metrics (a label value counted for the first time)
// counts as not there yet.
func (s *Server) WaitMetric(t testing.TB, series string, want float64) {
	t.Helper()
	s.wait(t, series, func(v float64) bool { return v == want }, fmt.Sprintf("want %v", want))
}

// WaitMetricFunc polls series until ok accepts its value and returns that value, failing
// the test with the last value after PollFor. Absent series are waited for, as in
// WaitMetric.
func (s *Server) WaitMetricFunc(t testing.TB, series string, ok func(float64) bool) float64 {
	t.Helper()
	return s.wait(t, series, ok, "not the value waited for")
}

// wait is WaitMetric and WaitMetricFunc; what says what was waited for in the failure.
func (s *Server) wait(t testing.TB, series string, ok func(float64) bool, what string) float64 {
	t.Helper()
	deadline := time.Now().Add(PollFor)
	for {
		got, present := s.Metrics(t)[series]
		if present && ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			if !present {
				t.Fatalf("series %s is not on %s/metrics after %v", series, s.Admin, PollFor)
			}
			t.Fatalf("%s = %v after %v; %s", series, got, PollFor, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
