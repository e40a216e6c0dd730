package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// worker is what the coordinator drives: an in-process Worker or a child process.
type worker interface {
	ready() <-chan struct{}
	died() <-chan struct{} // closed when a worker process ends early; nil in process
	goPhase()
	quiet()
	progress() Progress
	stop() (*partReport, error)
}

type localWorker struct{ w *Worker }

func (l localWorker) ready() <-chan struct{}     { return l.w.Ready() }
func (l localWorker) died() <-chan struct{}      { return nil }
func (l localWorker) goPhase()                   { l.w.Go() }
func (l localWorker) quiet()                     { l.w.Quiet() }
func (l localWorker) progress() Progress         { return l.w.Progress() }
func (l localWorker) stop() (*partReport, error) { return l.w.Stop(), nil }

// childMsg is one JSON line from a child worker.
type childMsg struct {
	Type     string      `json:"type"` // ready, progress, report
	Progress Progress    `json:"progress"`
	Report   *partReport `json:"report,omitempty"`
}

// childStart is the first line a child reads on stdin.
type childStart struct {
	Config Config `json:"config"`
	N      int    `json:"n"`
	Offset int    `json:"offset"` // index of the first source address this child uses
}

type childWorker struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	readyCh chan struct{}
	mu      sync.Mutex
	last    Progress
	report  chan *partReport
	// exited is closed when the process's output ends without a report; every later
	// look at it (the ramp's, then stop's) sees it at once.
	exited chan struct{}
}

func (c *childWorker) ready() <-chan struct{} { return c.readyCh }
func (c *childWorker) died() <-chan struct{}  { return c.exited }
func (c *childWorker) goPhase()               { _, _ = io.WriteString(c.stdin, "go\n") }
func (c *childWorker) quiet()                 { _, _ = io.WriteString(c.stdin, "quiet\n") }
func (c *childWorker) progress() Progress {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

func (c *childWorker) stop() (*partReport, error) {
	_, _ = io.WriteString(c.stdin, "stop\n")
	select {
	case r := <-c.report:
		_ = c.cmd.Wait()
		return r, nil
	case <-c.exited:
		_ = c.cmd.Wait()
		return nil, errors.New("bench: worker exited without a report")
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		return nil, errors.New("bench: worker did not report within 30 s")
	}
}

func startChild(exe string, start childStart) (*childWorker, error) {
	cmd := exec.Command(exe, "-worker")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start worker: %w", err)
	}
	c := &childWorker{cmd: cmd, stdin: stdin, readyCh: make(chan struct{}), report: make(chan *partReport, 1), exited: make(chan struct{})}
	line, _ := json.Marshal(start)
	if _, err := stdin.Write(append(line, '\n')); err != nil {
		return nil, fmt.Errorf("bench: configure worker: %w", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		readyOnce := sync.Once{}
		for sc.Scan() {
			var m childMsg
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			switch m.Type {
			case "ready":
				c.mu.Lock()
				c.last = m.Progress
				c.mu.Unlock()
				readyOnce.Do(func() { close(c.readyCh) })
			case "progress":
				c.mu.Lock()
				c.last = m.Progress
				c.mu.Unlock()
			case "report":
				c.report <- m.Report
				return
			}
		}
		close(c.exited)
	}()
	return c, nil
}

// RunChild is a child worker's main: it reads its share from stdin, reports JSON lines on
// stdout, and returns when the coordinator says stop.
func RunChild(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	in := bufio.NewScanner(stdin)
	if !in.Scan() {
		return errors.New("bench: worker: no configuration on stdin")
	}
	var start childStart
	if err := json.Unmarshal(in.Bytes(), &start); err != nil {
		return fmt.Errorf("bench: worker: %w", err)
	}
	srcs, err := ParseSources(start.Config.Source)
	if err != nil {
		return err
	}
	w, err := NewWorker(start.Config, start.N, rotate(srcs, start.Offset))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := w.Start(ctx); err != nil {
		return err
	}
	var outMu sync.Mutex
	emit := func(m childMsg) {
		b, _ := json.Marshal(m)
		outMu.Lock()
		_, _ = stdout.Write(append(b, '\n'))
		outMu.Unlock()
	}
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				emit(childMsg{Type: "progress", Progress: w.Progress()})
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		<-w.Ready()
		emit(childMsg{Type: "ready", Progress: w.Progress()})
	}()
	for in.Scan() {
		switch strings.TrimSpace(in.Text()) {
		case "go":
			w.Go()
		case "quiet":
			w.Quiet()
		case "stop":
			emit(childMsg{Type: "report", Report: w.Stop()})
			return nil
		}
	}
	emit(childMsg{Type: "report", Report: w.Stop()})
	return nil
}

func rotate(srcs []net.IP, k int) []net.IP {
	k %= len(srcs)
	return append(append([]net.IP(nil), srcs[k:]...), srcs[:k]...)
}

// Run executes cfg and returns the merged report. Progress lines go to progress (nil for
// none). With cfg.Procs > 1 the workers are child processes of exe (this binary, run with
// -worker), each holding an equal share of the sockets.
func Run(ctx context.Context, cfg Config, exe string, progress io.Writer) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	srcs, _ := ParseSources(cfg.Source)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	before := sampleServer(cfg.ServerPID, cfg.Admin)
	started := time.Now()
	var workers []worker
	var shares []int // each worker's sockets, counted as errors if it dies
	for i := range cfg.Procs {
		n := cfg.Conns / cfg.Procs
		if i < cfg.Conns%cfg.Procs {
			n++
		}
		part := cfg
		part.Rate, part.ConnRate = cfg.Rate/float64(cfg.Procs), cfg.ConnRate/float64(cfg.Procs)
		offset := i * len(srcs) / cfg.Procs
		if cfg.Procs == 1 {
			w, err := NewWorker(part, n, rotate(srcs, offset))
			if err != nil {
				return nil, err
			}
			if err := w.Start(ctx); err != nil {
				return nil, err
			}
			workers = append(workers, localWorker{w})
			shares = append(shares, n)
			continue
		}
		c, err := startChild(exe, childStart{Config: part, N: n, Offset: offset})
		if err != nil {
			for _, w := range workers {
				_, _ = w.stop()
			}
			return nil, err
		}
		workers = append(workers, c)
		shares = append(shares, n)
	}
	// stopAll stops every worker and returns their reports; unreported is how many
	// sockets belonged to workers that died without one.
	stopAll := func() (parts []*partReport, unreported int64, err error) {
		var errs []error
		for i, w := range workers {
			p, err := w.stop()
			if err != nil {
				errs = append(errs, err)
				unreported += int64(shares[i])
				continue
			}
			parts = append(parts, p)
		}
		return parts, unreported, errors.Join(errs...)
	}
	sum := func() Progress {
		var p Progress
		for _, w := range workers {
			q := w.progress()
			p.Open += q.Open
			p.Failed += q.Failed
			p.Received += q.Received
			p.Errors += q.Errors
		}
		return p
	}
	ticker := newProgressPrinter(progress, sum)
	defer ticker.stop()

	// Ramp: wait until every worker has settled its first connects.
	for _, w := range workers {
		select {
		case <-w.ready():
		case <-w.died():
			_, _, _ = stopAll()
			return nil, errors.New("bench: a worker exited while ramping")
		case <-ctx.Done():
			_, _, _ = stopAll()
			return nil, ctx.Err()
		}
	}
	rampEnd := time.Now()
	ticker.note("all connected")

	var bc *BroadcastReport
	var sendTimes []int64
	_, activeCPU0 := procStats(cfg.ServerPID)
	slabBefore := before.slab
	activeStart := time.Now()
	for _, w := range workers {
		w.goPhase()
	}
	switch cfg.Scenario {
	case ScenarioConnect:
	case ScenarioIdle, ScenarioEcho, ScenarioChurn:
		sleepCtx(ctx, cfg.Duration)
	case ScenarioBroadcast:
		bc, sendTimes = publishAll(ctx, cfg, sum)
	case ScenarioReconnect:
		if cfg.Signal != "" {
			sig := syscall.SIGTERM
			if cfg.Signal == "kill" {
				sig = syscall.SIGKILL
			}
			if err := syscall.Kill(cfg.ServerPID, sig); err != nil {
				ticker.note("signal failed: " + err.Error())
			}
		}
		sleepCtx(ctx, cfg.Duration)
	}
	// The active phase (msgs_per_s's denominator) ends here: echo's wait for stragglers
	// below sends nothing, and counting it would understate the rate.
	activeEnd := time.Now()
	if cfg.Scenario == ScenarioEcho {
		// Let the messages in flight come back before counting losses.
		for _, w := range workers {
			w.quiet()
		}
		sleepCtx(ctx, min(cfg.Wait, time.Second))
	}
	rssActive, activeCPU1 := procStats(cfg.ServerPID)
	slabActive := slabBytes()
	parts, unreported, err := stopAll()
	if len(parts) == 0 {
		return nil, err
	}
	m := merge(parts)
	after := sampleServer(cfg.ServerPID, cfg.Admin)
	r := buildReport(cfg, m, started, rampEnd, activeStart, activeEnd, bc, sendTimes)
	// A worker that died took its sockets' counts with it: every one is an error.
	r.Errors += unreported
	if cfg.ServerPID > 0 || cfg.Admin != "" {
		r.Server = &ServerReport{
			PID: cfg.ServerPID, RSSBefore: before.rss, RSSAfter: after.rss, CPUSeconds: after.cpu - before.cpu,
			ActiveCPUSeconds: activeCPU1 - activeCPU0,
			RSSActive:        rssActive,
			MetricsBefore:    before.metrics, MetricsAfter: after.metrics,
		}
		if cfg.ServerPID > 0 && r.Open > 0 {
			r.Server.UserBytesPerConn = float64(rssActive-before.rss) / float64(r.Open)
			r.Server.KernelBytesPerConn = float64(slabActive-slabBefore) / float64(r.Open)
		}
		if ops := r.activeOps(); cfg.ServerPID > 0 && ops > 0 {
			r.Server.CPUPerOpUs = r.Server.ActiveCPUSeconds * 1e6 / float64(ops)
		}
	}
	return r, err
}

// activeOps is what the server did in the active phase, for CPU per operation: echo
// messages received back, broadcast deliveries, pings answered while idle.
func (r *Report) activeOps() int64 {
	switch {
	case r.Echo != nil:
		return r.Echo.Received
	case r.Broadcast != nil:
		return r.Broadcast.Received
	case r.Idle != nil:
		return r.Idle.Pings
	}
	return 0
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

// publishAll publishes cfg.Messages, through the admin API or as a client pub
// (Config.Publish), at cfg.Rate per second (10 when unset) and waits until every open
// socket has each message the server took, or cfg.Wait passes. Under a Channel it
// publishes to that channel; otherwise it broadcasts. A publisher that cannot connect
// fails every message.
func publishAll(ctx context.Context, cfg Config, sum func() Progress) (*BroadcastReport, []int64) {
	rate := cfg.Rate
	if rate <= 0 {
		rate = 10
	}
	receivers := sum().Open
	bc := &BroadcastReport{Messages: cfg.Messages, Receivers: receivers}
	sendTimes := make([]int64, cfg.Messages)
	pub, err := newPublisher(ctx, cfg)
	if err != nil {
		bc.PublishFails = cfg.Messages // nothing was taken, so nothing is expected
		return bc, sendTimes
	}
	defer pub.close()
	failed := 0
	start := time.Now()
	for seq := range cfg.Messages {
		if d := time.Until(start.Add(time.Duration(float64(seq) / rate * float64(time.Second)))); d > 0 {
			sleepCtx(ctx, d)
		}
		now := time.Now().UnixNano()
		sendTimes[seq] = now
		head := "wsr-bench:" + strconv.Itoa(seq) + ":" + strconv.FormatInt(now, 10) + ":"
		if pub.publish(head+strings.Repeat("x", max(cfg.Size-len(head), 0))) != nil {
			failed++
		}
	}
	// Refusals of a client pub arrive as error frames while this waits, so the count of
	// messages to wait for is taken again on each look.
	deadline := time.Now().Add(cfg.Wait)
	for ctx.Err() == nil {
		bc.PublishFails = failed + pub.refused()
		if sum().Received >= receivers*int64(cfg.Messages-bc.PublishFails) || !time.Now().Before(deadline) {
			break
		}
		sleepCtx(ctx, 20*time.Millisecond)
	}
	bc.Expected = receivers * int64(cfg.Messages-bc.PublishFails)
	return bc, sendTimes
}

func buildReport(cfg Config, m *merged, started, rampEnd, activeStart, activeEnd time.Time, bc *BroadcastReport, sendTimes []int64) *Report {
	ramp := rampEnd.Sub(started).Seconds()
	active := activeEnd.Sub(activeStart).Seconds()
	r := &Report{
		Scenario: cfg.Scenario, Conns: cfg.Conns, URL: cfg.URL, Procs: cfg.Procs, StartedAt: started,
		Seconds: time.Since(started).Seconds(), Open: m.Open,
		Errors: m.FirstFailed + m.Errors,
		Connect: ConnectReport{
			Attempted: m.Attempted, Opened: m.Opened, Failed: m.Failed, ByCause: m.Causes,
			RampS: ramp, LatencyMs: latencyOf(m.connect),
		},
	}
	if ramp > 0 {
		r.Connect.RatePerS = float64(m.Opened) / ramp
	}
	r.LatencyMs = latencyOf(m.latency)
	switch cfg.Scenario {
	case ScenarioConnect:
		r.MsgsPerS = r.Connect.RatePerS
		r.LatencyMs = r.Connect.LatencyMs
		r.Lost = m.ClosedByServer // opened, then closed by the server before the run ended
	case ScenarioIdle:
		r.Idle = &IdleReport{Pings: m.Pings, ClosedByServer: m.ClosedByServer, Kept: m.Open}
		r.Lost = m.ClosedByServer
		r.MsgsPerS = float64(m.Pings) / max(active, 1e-9)
		r.LatencyMs = r.Connect.LatencyMs
	case ScenarioEcho:
		mode := "closed"
		if cfg.Rate > 0 {
			mode = "open"
		}
		r.Echo = &EchoReport{Mode: mode, Sent: m.Sent, Received: m.Received}
		r.Lost = m.Sent - m.Received
		// A socket the server closed sends no more: with nothing in flight (open loop
		// between sends) that shows as no lost message, so it is an error of its own.
		r.Errors += m.ClosedByServer
		r.MsgsPerS = float64(m.Received) / max(active, 1e-9)
	case ScenarioBroadcast:
		bc.Received = m.Received
		r.Broadcast = bc
		r.Lost = max(bc.Expected-bc.Received, 0)
		r.Errors += int64(bc.PublishFails) // a message the server did not take is the run's error
		r.Errors += m.ClosedByServer       // a receiver the server closed
		var lasts []float64
		var first, last int64
		for seq, t := range m.LastSeen {
			if seq < len(sendTimes) {
				lasts = append(lasts, float64(t-sendTimes[seq])/1e6)
			}
			last = max(last, t)
		}
		if len(sendTimes) > 0 {
			first = sendTimes[0]
		}
		sort.Float64s(lasts)
		if len(lasts) > 0 {
			bc.LastMsP50, bc.LastMsMax = lasts[len(lasts)/2], lasts[len(lasts)-1]
		}
		if last > first {
			r.MsgsPerS = float64(m.Received) / (float64(last-first) / 1e9)
		}
	case ScenarioChurn:
		r.Churn = &ChurnReport{Churned: m.Churned, PerS: float64(m.Churned) / max(active, 1e-9)}
		r.Lost = m.ClosedByServer // sockets the server closed, not the churn
		r.MsgsPerS = r.Churn.PerS
		r.LatencyMs = r.Connect.LatencyMs
	case ScenarioReconnect:
		rc := &ReconnectReport{Disconnected: m.Disconnected, Reconnected: m.Reconnected}
		for _, k := range sortedKeys(m.Curve) {
			rc.Curve = append(rc.Curve, CurvePoint{TMs: k * int(curveBucket/time.Millisecond), N: m.Curve[k]})
		}
		r.Reconnect = rc
		r.Lost = max(m.Disconnected-m.Reconnected, 0)
		r.LatencyMs = latencyOf(m.reconnect)
		r.MsgsPerS = float64(m.Reconnected) / max(active, 1e-9)
	}
	if cfg.Scenario != ScenarioBroadcast && len(m.SeqSent) > 0 {
		// Tagged messages published from outside the swarm during the run.
		bc := &BroadcastReport{Messages: len(m.SeqSent), Received: m.Received}
		bc.LastMsP50, bc.LastMsMax = timeToLast(m.LastSeen, m.SeqSent)
		r.Broadcast = bc
	}
	return r
}

// timeToLast returns the median and the maximum over messages of the time from a
// message's publish (carried in its payload) to its last arrival, in milliseconds.
func timeToLast(lastSeen, sent map[int]int64) (p50, maxMs float64) {
	var lasts []float64
	for seq, t := range lastSeen {
		if s, ok := sent[seq]; ok {
			lasts = append(lasts, float64(t-s)/1e6)
		}
	}
	if len(lasts) == 0 {
		return 0, 0
	}
	sort.Float64s(lasts)
	return lasts[len(lasts)/2], lasts[len(lasts)-1]
}

// progressPrinter writes a live progress line to a terminal once a second.
type progressPrinter struct {
	w    io.Writer
	done chan struct{}
	mu   sync.Mutex
}

func newProgressPrinter(w io.Writer, sum func() Progress) *progressPrinter {
	p := &progressPrinter{w: w, done: make(chan struct{})}
	if w == nil {
		return p
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		start := time.Now()
		var prev Progress
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
			}
			s := sum()
			p.mu.Lock()
			fmt.Fprintf(p.w, "\r%6.0fs  open %-8d failed %-6d received %-10d (%d/s)  errors %d   ",
				time.Since(start).Seconds(), s.Open, s.Failed, s.Received, s.Received-prev.Received, s.Errors)
			p.mu.Unlock()
			prev = s
		}
	}()
	return p
}

func (p *progressPrinter) note(msg string) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "\n%s\n", msg)
}

func (p *progressPrinter) stop() {
	close(p.done)
	if p.w != nil {
		fmt.Fprintln(p.w)
	}
}
