package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// source is where the tests' sockets come from: loopback addresses of their own, so
// ports held in TIME_WAIT on 127.0.0.1 by whatever else runs here cannot starve the dials.
const source = "127.0.45.1-127.0.45.8"

// readReport decodes a JSON report file into a generic map, so the test checks the names
// on the wire rather than the Go struct's.
func readReport(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, b)
	}
	return m
}

// checkContract asserts DESIGN.md's top level of the JSON report: scenario, conns, errors,
// lost, msgs_per_s, and latency_ms with p50, p99, p999 and max.
func checkContract(t *testing.T, m map[string]any) {
	t.Helper()
	if _, ok := m["scenario"].(string); !ok {
		t.Errorf("report scenario = %#v, want a string", m["scenario"])
	}
	for _, k := range []string{"conns", "errors", "lost", "msgs_per_s"} {
		if _, ok := m[k].(float64); !ok {
			t.Errorf("report %s = %#v, want a number", k, m[k])
		}
	}
	lat, ok := m["latency_ms"].(map[string]any)
	if !ok {
		t.Fatalf("report latency_ms = %#v, want an object", m["latency_ms"])
	}
	for _, k := range []string{"p50", "p99", "p999", "max"} {
		if _, ok := lat[k].(float64); !ok {
			t.Errorf("report latency_ms.%s = %#v, want a number", k, lat[k])
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{name: "no scenario", args: nil, want: 2},
		{name: "flag first", args: []string{"-url", "ws://127.0.0.1:1/"}, want: 2},
		{name: "unknown flag", args: []string{"connect", "-bogus"}, want: 2},
		{name: "bad flag value", args: []string{"connect", "-conns", "many"}, want: 2},
		{name: "extra argument", args: []string{"connect", "-conns", "1", "stray"}, want: 2},
		{name: "unknown scenario", args: []string{"flood", "-url", "ws://127.0.0.1:1/"}, want: 1},
		{name: "bad url", args: []string{"connect", "-url", "http://127.0.0.1:1/"}, want: 1},
		{name: "broadcast without admin", args: []string{"broadcast", "-url", "ws://127.0.0.1:1/"}, want: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(tc.args); got != tc.want {
				t.Errorf("run(%q) = %d, want %d", tc.args, got, tc.want)
			}
		})
	}
}

// TestRunEcho runs a short echo scenario in process and checks the report file.
func TestRunEcho(t *testing.T) {
	srv := servertest.Start(t, server.Options{App: server.AppEcho})
	path := filepath.Join(t.TempDir(), "r.json")
	if code := run([]string{"echo", "-url", srv.URL, "-admin", srv.Admin, "-conns", "10", "-duration", "300ms", "-source", source, "-report", path}); code != 0 {
		t.Fatalf("run(echo) = %d, want 0", code)
	}
	m := readReport(t, path)
	checkContract(t, m)
	if m["scenario"] != "echo" || m["conns"] != 10.0 || m["errors"] != 0.0 || m["lost"] != 0.0 {
		t.Errorf("report scenario %v conns %v errors %v lost %v, want echo, 10, 0, 0", m["scenario"], m["conns"], m["errors"], m["lost"])
	}
	echo, _ := m["echo"].(map[string]any)
	if echo == nil || echo["sent"] != echo["received"] || echo["sent"] == 0.0 {
		t.Errorf("report echo = %v, want sent == received > 0", m["echo"])
	}
	if got := srv.Metric(t, "ws_messages_received_total"); got != echo["sent"] {
		t.Errorf("server ws_messages_received_total = %v, want the swarm's sent %v", got, echo["sent"])
	}
}

// TestExitCodeOnErrors dials a port nobody listens on: every connect is refused, the
// report says so, and the exit status is 3.
func TestExitCodeOnErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	path := filepath.Join(t.TempDir(), "r.json")
	if code := run([]string{"connect", "-url", "ws://" + addr + "/", "-conns", "5", "-report", path}); code != 3 {
		t.Fatalf("run(connect to a closed port) = %d, want 3", code)
	}
	m := readReport(t, path)
	checkContract(t, m)
	connect, _ := m["connect"].(map[string]any)
	causes, _ := connect["failures_by_cause"].(map[string]any)
	if m["errors"] != 5.0 || connect["opened"] != 0.0 || causes["refused"] != 5.0 {
		t.Errorf("report errors %v, connect %v; want 5 errors, none opened, 5 refused", m["errors"], connect)
	}
}

// swarmRun is the swarm binary, built for a test, set to run against an echo server.
type swarmRun struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	srv            *servertest.Server
	report         string // the JSON report's path
}

// newSwarmRun builds this command (skipped with -short), starts an echo server, and
// prepares `swarm scenario -url <server> -source <source> -report <file> args...`, killed
// after a minute.
func newSwarmRun(t *testing.T, scenario string, args ...string) *swarmRun {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the swarm binary")
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "swarm")
	if out, err := exec.Command("go", "build", "-o", exe, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/swarm: %v\n%s", err, out)
	}
	r := &swarmRun{srv: servertest.Start(t, server.Options{App: server.AppEcho}), report: filepath.Join(dir, "r.json")}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	args = append([]string{scenario, "-url", r.srv.URL, "-source", source, "-report", r.report}, args...)
	r.cmd = exec.CommandContext(ctx, exe, args...)
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	return r
}

// TestProcs builds the swarm and runs it with two worker processes (the binary re-runs
// itself with -worker): the merged report holds both shares, and the server counted them.
func TestProcs(t *testing.T) {
	run := newSwarmRun(t, "connect", "-procs", "2", "-conns", "200")
	srv := run.srv
	run.cmd.Args = append(run.cmd.Args, "-admin", srv.Admin)
	if err := run.cmd.Run(); err != nil {
		t.Fatalf("swarm connect -procs 2: %v\nstdout:\n%s\nstderr:\n%s", err, run.stdout.String(), run.stderr.String())
	}
	if !strings.Contains(run.stdout.String(), "## swarm connect: 200 connections, 2 process(es)") {
		t.Errorf("Markdown summary missing or wrong:\n%s", run.stdout.String())
	}
	m := readReport(t, run.report)
	checkContract(t, m)
	if m["scenario"] != "connect" || m["conns"] != 200.0 || m["errors"] != 0.0 || m["lost"] != 0.0 || m["procs"] != 2.0 {
		t.Errorf("report scenario %v conns %v errors %v lost %v procs %v, want connect, 200, 0, 0, 2",
			m["scenario"], m["conns"], m["errors"], m["lost"], m["procs"])
	}
	connect, _ := m["connect"].(map[string]any)
	if connect["opened"] != 200.0 || connect["failed"] != 0.0 || m["open_at_end"] != 200.0 {
		t.Errorf("report connect %v open_at_end %v, want 200 opened by the two workers together", connect, m["open_at_end"])
	}
	if got := srv.Metric(t, "ws_connections_opened_total"); got != 200 {
		t.Errorf("server ws_connections_opened_total = %v, want 200", got)
	}
}

// TestProcsWorkerDies kills one of two worker processes while their sockets idle: the
// run still reports, every socket of the dead worker counts as an error, and the swarm
// exits 3 instead of 0.
func TestProcsWorkerDies(t *testing.T) {
	run := newSwarmRun(t, "idle", "-procs", "2", "-conns", "40", "-duration", "4s")
	cmd := run.cmd
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	run.srv.WaitMetric(t, "ws_connections_active", 40)
	kids := childrenOf(t, cmd.Process.Pid)
	if len(kids) != 2 {
		t.Fatalf("swarm has %d child processes %v, want its 2 workers", len(kids), kids)
	}
	if err := syscall.Kill(kids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("swarm exit = %v, want status 3\nstdout:\n%s\nstderr:\n%s", err, run.stdout.String(), run.stderr.String())
	}
	m := readReport(t, run.report)
	checkContract(t, m)
	if m["errors"] != 20.0 || m["open_at_end"] != 20.0 {
		t.Errorf("report errors %v open_at_end %v, want the dead worker's 20 sockets as errors and the other 20 open", m["errors"], m["open_at_end"])
	}
}

// childrenOf returns the processes whose parent is pid, from /proc.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	for _, d := range dirs {
		child, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after its ')'.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			kids = append(kids, child)
		}
	}
	return kids
}
