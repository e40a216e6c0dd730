package bench

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency is a distribution summary in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		P50: ms(h.ValueAtQuantile(50)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()),
	}
}

// Report is a run's result. The top-level fields are DESIGN.md's contract (outside checks
// parse them); the sections below them are details.
type Report struct {
	Scenario  string  `json:"scenario"`
	Conns     int     `json:"conns"`
	Errors    int64   `json:"errors"`
	Lost      int64   `json:"lost"`
	MsgsPerS  float64 `json:"msgs_per_s"`
	LatencyMs Latency `json:"latency_ms"`

	URL       string    `json:"url"`
	Procs     int       `json:"procs"`
	StartedAt time.Time `json:"started_at"`
	Seconds   float64   `json:"seconds"`
	Open      int64     `json:"open_at_end"`

	Connect   ConnectReport    `json:"connect"`
	Idle      *IdleReport      `json:"idle,omitempty"`
	Echo      *EchoReport      `json:"echo,omitempty"`
	Broadcast *BroadcastReport `json:"broadcast,omitempty"`
	Churn     *ChurnReport     `json:"churn,omitempty"`
	Reconnect *ReconnectReport `json:"reconnect,omitempty"`
	Server    *ServerReport    `json:"server,omitempty"`
}

// ConnectReport covers the ramp (first connects). Attempted, Failed and ByCause count
// every dial of the run, churn replacements and reconnects included; Opened counts first
// connects only.
type ConnectReport struct {
	Attempted int64            `json:"attempted"`
	Opened    int64            `json:"opened"`
	Failed    int64            `json:"failed"`
	ByCause   map[string]int64 `json:"failures_by_cause"`
	RatePerS  float64          `json:"rate_per_s"`
	RampS     float64          `json:"ramp_s"`
	LatencyMs Latency          `json:"latency_ms"`
}

// IdleReport covers holding sockets.
type IdleReport struct {
	Pings          int64 `json:"pings_answered"`
	ClosedByServer int64 `json:"closed_by_server"`
	Kept           int64 `json:"kept_alive"`
}

// EchoReport covers echo traffic.
type EchoReport struct {
	Mode     string `json:"mode"` // closed or open loop
	Sent     int64  `json:"sent"`
	Received int64  `json:"received"`
}

// BroadcastReport covers published messages and their arrivals.
type BroadcastReport struct {
	Messages  int   `json:"messages"`
	Receivers int64 `json:"receivers"`
	// Expected is Receivers times the messages the server took (Messages less
	// PublishFails): what must arrive for nothing to be lost.
	Expected  int64   `json:"expected"`
	Received  int64   `json:"received"`
	LastMsP50 float64 `json:"time_to_last_delivery_ms_p50"`
	LastMsMax float64 `json:"time_to_last_delivery_ms_max"`
	// PublishFails counts messages the server did not take: a failed send, an admin
	// status other than 202, or an error frame answering a client pub.
	PublishFails int `json:"publish_failures"`
}

// ChurnReport covers sockets closed and replaced.
type ChurnReport struct {
	Churned int64   `json:"churned"`
	PerS    float64 `json:"per_s"`
}

// ReconnectReport covers a drain or kill survived.
type ReconnectReport struct {
	Disconnected int64        `json:"disconnected"`
	Reconnected  int64        `json:"reconnected"`
	Curve        []CurvePoint `json:"curve"`
}

// CurvePoint is how many sockets reconnected in the bucket starting at TMs after the
// first disconnect.
type CurvePoint struct {
	TMs int   `json:"t_ms"`
	N   int64 `json:"n"`
}

// ServerReport is what the swarm saw of the server: /proc for a local pid, /metrics for
// the admin endpoint.
type ServerReport struct {
	PID        int     `json:"pid,omitempty"`
	RSSBefore  int64   `json:"rss_bytes_before,omitempty"`
	RSSAfter   int64   `json:"rss_bytes_after,omitempty"`
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	// ActiveCPUSeconds is the server's CPU during the active phase alone (after the ramp);
	// CPUPerOpUs divides it by the phase's operations (echo messages, broadcast deliveries,
	// pings), the fair figure on a machine where the swarm competes for the same cores.
	ActiveCPUSeconds float64 `json:"active_cpu_seconds,omitempty"`
	CPUPerOpUs       float64 `json:"cpu_us_per_op,omitempty"`
	// RSSActive is the server's RSS at the end of the active phase, with every socket
	// still open. UserBytesPerConn is its growth over RSSBefore per open socket;
	// KernelBytesPerConn is the growth of the kernel's slab (/proc/meminfo) per open
	// socket over the same span, for a local server. On loopback the slab holds both ends
	// of each connection, so it is the cost of a connection pair.
	RSSActive          int64              `json:"rss_bytes_active,omitempty"`
	UserBytesPerConn   float64            `json:"user_bytes_per_conn,omitempty"`
	KernelBytesPerConn float64            `json:"kernel_slab_bytes_per_conn_pair,omitempty"`
	MetricsBefore      map[string]float64 `json:"metrics_before,omitempty"`
	MetricsAfter       map[string]float64 `json:"metrics_after,omitempty"`
}

// serverSample is one look at the server.
type serverSample struct {
	rss     int64
	cpu     float64
	slab    int64
	metrics map[string]float64
}

// sampleServer reads /proc/<pid> (when pid > 0) and the ws_* series of /metrics (when
// admin is set). Failures leave fields zero: a remote server has no /proc here.
func sampleServer(pid int, admin string) serverSample {
	var s serverSample
	if pid > 0 {
		s.rss, s.cpu = procStats(pid)
		s.slab = slabBytes()
	}
	if admin != "" {
		s.metrics = scrape(admin)
	}
	return s
}

// procStats returns RSS bytes and user+system CPU seconds of pid.
func procStats(pid int) (rss int64, cpu float64) {
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				rss = kb * 1024
			}
		}
	}
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		// Fields after the parenthesised command name; utime and stime are 14 and 15.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 13 {
				ut, _ := strconv.ParseFloat(f[11], 64)
				st, _ := strconv.ParseFloat(f[12], 64)
				cpu = (ut + st) / 100 // USER_HZ is 100 on Linux
			}
		}
	}
	return rss, cpu
}

// slabBytes returns the kernel's slab memory (/proc/meminfo Slab), where socket and TCP
// state live.
func slabBytes() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Slab:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// scrape reads the unlabelled-or-labelled ws_* samples of a Prometheus text page.
func scrape(admin string) map[string]float64 {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(strings.TrimSuffix(admin, "/") + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "ws_") || strings.Contains(line, "_bucket{") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	return out
}

// WriteMarkdown prints r as a short Markdown summary for people.
func (r *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "## swarm %s: %d connections, %d process(es), %.1f s\n\n", r.Scenario, r.Conns, r.Procs, r.Seconds)
	fmt.Fprintln(w, "| figure | value |")
	fmt.Fprintln(w, "| --- | ---: |")
	row := func(k, format string, v ...any) { fmt.Fprintf(w, "| %s | "+format+" |\n", append([]any{k}, v...)...) }
	row("connected", "%d of %d", r.Connect.Opened, r.Conns)
	row("connect rate", "%.0f /s", r.Connect.RatePerS)
	row("connect latency p50 / p99 / max", "%.2f / %.2f / %.2f ms", r.Connect.LatencyMs.P50, r.Connect.LatencyMs.P99, r.Connect.LatencyMs.Max)
	if len(r.Connect.ByCause) > 0 {
		causes := make([]string, 0, len(r.Connect.ByCause))
		for k, v := range r.Connect.ByCause {
			causes = append(causes, fmt.Sprintf("%s=%d", k, v))
		}
		sort.Strings(causes)
		row("failures by cause", "%s", strings.Join(causes, ", "))
	}
	row("errors", "%d", r.Errors)
	row("lost", "%d", r.Lost)
	row("messages per second", "%.0f", r.MsgsPerS)
	row("latency p50 / p99 / p99.9 / max", "%.2f / %.2f / %.2f / %.2f ms", r.LatencyMs.P50, r.LatencyMs.P99, r.LatencyMs.P999, r.LatencyMs.Max)
	if b := r.Broadcast; b != nil {
		row("broadcast deliveries", "%d of %d (%d messages, %d not taken by the server)", b.Received, b.Expected, b.Messages, b.PublishFails)
		row("time to last delivery p50 / max", "%.1f / %.1f ms", b.LastMsP50, b.LastMsMax)
	}
	if i := r.Idle; i != nil {
		row("kept alive / closed by server", "%d / %d", i.Kept, i.ClosedByServer)
		row("pings answered", "%d", i.Pings)
	}
	if e := r.Echo; e != nil {
		row("echo sent / received ("+e.Mode+" loop)", "%d / %d", e.Sent, e.Received)
	}
	if c := r.Churn; c != nil {
		row("churned", "%d (%.0f /s)", c.Churned, c.PerS)
	}
	if rc := r.Reconnect; rc != nil {
		row("disconnected / reconnected", "%d / %d", rc.Disconnected, rc.Reconnected)
	}
	if s := r.Server; s != nil && s.PID > 0 {
		row("server RSS before / with sockets open / after", "%.1f / %.1f / %.1f MiB", float64(s.RSSBefore)/(1<<20), float64(s.RSSActive)/(1<<20), float64(s.RSSAfter)/(1<<20))
		row("server bytes per open socket: user space / kernel slab (pair)", "%.0f / %.0f B", s.UserBytesPerConn, s.KernelBytesPerConn)
		row("server CPU (whole run / active phase)", "%.2f / %.2f s", s.CPUSeconds, s.ActiveCPUSeconds)
		if s.CPUPerOpUs > 0 {
			row("server CPU per operation", "%.2f µs", s.CPUPerOpUs)
		}
	}
	fmt.Fprintln(w)
}
