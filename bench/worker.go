package bench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/wsreactor/wsreactor/timerwheel"
)

// Worker opens and drives one share of a run's sockets in this process. Its exported
// methods are safe for concurrent use.
type Worker struct {
	cfg     Config
	n       int      // sockets this worker opens
	srcs    []net.IP // source addresses, rotated per dial
	request []byte   // the upgrade request, the same for every socket
	addr    string   // host:port to dial
	stats   *stats

	cli   *gnet.Client
	dialq chan *conn

	mu    sync.Mutex
	loops map[gnet.EventLoop]*loopState
	list  atomic.Pointer[[]*loopState]

	settled atomic.Int64 // first connects that ended (opened or failed)
	// pending counts first connects and churn replacements queued or dialling; each ends
	// opened or failed for good. Stop waits for it to reach zero.
	pending  atomic.Int64
	ctx      context.Context // Start's; Stop does not wait for dials once it is done
	subs     atomic.Int64    // first connects whose sub was answered (when Channel is set)
	ready    chan struct{}
	readyOne sync.Once
	running  atomic.Bool // the scenario's active phase (after Go, before Stop)
	stopping atomic.Bool
	started  time.Time
	srcNext  atomic.Uint32
}

// NewWorker prepares a worker for n of cfg's sockets, dialling from srcs.
func NewWorker(cfg Config, n int, srcs []net.IP) (*Worker, error) {
	cfg = cfg.withDefaults()
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("bench: url: %w", err)
	}
	w := &Worker{
		cfg: cfg, n: n, srcs: srcs, addr: u.Host, stats: newStats(),
		dialq: make(chan *conn, n), loops: map[gnet.EventLoop]*loopState{}, ready: make(chan struct{}),
	}
	w.list.Store(&[]*loopState{})
	w.request = []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: d3NyZWFjdG9yLXN3YXJtIQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	raiseFileLimit()
	return w, nil
}

func raiseFileLimit() {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
}

// Start starts the event loops and the dial pool and begins the ramp. Ready is closed when
// every first connect has ended (and, with a Channel, every open socket is subscribed).
func (w *Worker) Start(ctx context.Context) error {
	cli, err := gnet.NewClient(&handler{w: w},
		// One loop per P: gnet's multicore default is one per CPU, and a worker run with
		// GOMAXPROCS=1 (as scripts/scale.sh runs them) would make its loops take turns.
		gnet.WithMulticore(true), gnet.WithNumEventLoop(runtime.GOMAXPROCS(0)), gnet.WithTicker(true), gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(nopLogger{}))
	if err != nil {
		return fmt.Errorf("bench: gnet client: %w", err)
	}
	if err := cli.Start(); err != nil {
		return fmt.Errorf("bench: gnet client start: %w", err)
	}
	w.cli = cli
	w.ctx = ctx
	w.started = time.Now()
	for range w.cfg.Dialers {
		go w.dialer(ctx)
	}
	go w.ramp(ctx)
	return nil
}

// Ready is closed once the ramp is over.
func (w *Worker) Ready() <-chan struct{} { return w.ready }

// Go starts the scenario's active phase (echo traffic, churn, reconnects).
func (w *Worker) Go() {
	w.running.Store(true)
	if w.cfg.Scenario == ScenarioEcho && w.cfg.Rate == 0 {
		w.each(func(c *conn) { w.sendEcho(c) })
	}
}

// Quiet ends the active phase (no new echo messages) without closing anything, so
// messages in flight can still arrive before Stop counts them.
func (w *Worker) Quiet() { w.running.Store(false) }

// Stop ends the run, closes every socket and returns the worker's report. It first lets
// the connects already queued or dialling (churn replacements) end, opened or failed, so
// the report and the server count the same sockets: a replacement the server upgraded
// but the swarm dropped at stop would be counted on one side only.
func (w *Worker) Stop() *partReport {
	w.running.Store(false)
	deadline := time.Now().Add(w.cfg.DialTimeout + time.Second) // a handshake ends by DialTimeout
	for w.pending.Load() > 0 && w.ctx != nil && w.ctx.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	w.stopping.Store(true)
	var open atomic.Int64
	done := make(chan struct{}, 64)
	list := w.loopList()
	for _, ls := range list {
		_ = ls.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			for _, c := range ls.conns {
				if c.state == connOpen {
					open.Add(1)
				}
			}
			done <- struct{}{}
			return nil
		}))
	}
	for range list {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
	r := w.stats.report(open.Load())
	if w.cli != nil {
		_ = w.cli.Stop()
	}
	return r
}

// Progress returns live counters for the progress line.
func (w *Worker) Progress() Progress {
	return Progress{
		Open:     w.stats.live.Load(),
		Failed:   w.stats.failed.Load(),
		Received: w.stats.received.Load(),
		Errors:   w.stats.errors.Load(),
	}
}

// Progress is a snapshot of a worker's counters.
type Progress struct {
	Open, Failed, Received, Errors int64
}

func (w *Worker) loopOf(el gnet.EventLoop) *loopState {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ls := w.loops[el]; ls != nil {
		return ls
	}
	ls := &loopState{w: w, el: el, wheel: timerwheel.New[*conn](w.cfg.Tick, time.Now())}
	ls.fire = ls.onTimer
	w.loops[el] = ls
	list := append(append([]*loopState(nil), *w.list.Load()...), ls)
	w.list.Store(&list)
	return ls
}

func (w *Worker) loopList() []*loopState { return *w.list.Load() }

// each runs fn on every socket, each on its own loop.
func (w *Worker) each(fn func(*conn)) {
	for _, ls := range w.loopList() {
		_ = ls.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			for i := len(ls.conns) - 1; i >= 0; i-- {
				if i < len(ls.conns) && ls.conns[i].state == connOpen {
					fn(ls.conns[i])
				}
			}
			return nil
		}))
	}
}

// ramp queues the first connects, paced at the connect rate.
func (w *Worker) ramp(ctx context.Context) {
	rate := w.cfg.ConnRate
	if w.cfg.Scenario == ScenarioConnect {
		rate = w.cfg.Rate
	}
	start := time.Now()
	for i := range w.n {
		if rate > 0 {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return
				}
			}
		}
		if w.cfg.MinFreeBytes > 0 && i%500 == 0 && memAvailable() < w.cfg.MinFreeBytes {
			// The memory guard: stop ramping and report rather than run the host out of
			// memory. The sockets not opened count as failed with their own cause.
			for range w.n - i {
				w.stats.fail("memory_guard")
				w.stats.firstFailed.Add(1)
				w.settle()
			}
			return
		}
		w.pending.Add(1)
		w.dialq <- &conn{w: w}
	}
	if w.n == 0 {
		w.readyOne.Do(func() { close(w.ready) })
	}
}

// dialer runs blocking connects from the pool and enrolls each socket into gnet.
func (w *Worker) dialer(ctx context.Context) {
	for {
		var c *conn
		select {
		case c = <-w.dialq:
		case <-ctx.Done():
			return
		}
		if w.stopping.Load() {
			continue
		}
		w.dial(c)
	}
}

func (w *Worker) dial(c *conn) {
	w.stats.attempted.Add(1)
	c.src = uint16(w.srcNext.Add(1) % uint32(len(w.srcs)))
	c.dialAt = time.Now()
	c.state = connDialing
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: w.srcs[c.src]}, Timeout: w.cfg.DialTimeout}
	nc, err := d.Dial("tcp", w.addr)
	if err == nil {
		_, err = w.cli.EnrollContext(nc, c)
	}
	if err != nil {
		w.stats.fail(dialCause(err))
		if c.kind == kindReconnect && !w.stopping.Load() {
			w.retryLater(c)
			return
		}
		w.settleFailed(c)
	}
}

// settleFailed ends a dial that will not be retried.
func (w *Worker) settleFailed(c *conn) {
	switch c.kind {
	case kindFirst:
		w.stats.firstFailed.Add(1)
		w.pending.Add(-1)
		w.settle()
	case kindChurn:
		// A replacement that never opened leaves the run a socket short: an error.
		w.stats.errors.Add(1)
		w.pending.Add(-1)
	}
}

// retryLater schedules another reconnect of c from a dial goroutine (c is on no loop).
func (w *Worker) retryLater(c *conn) {
	c.failedAgain()
	delay := w.backoff(c)
	time.AfterFunc(delay, func() {
		if !w.stopping.Load() {
			w.dialq <- c
		}
	})
}

func dialCause(err error) string {
	switch {
	case isErrno(err, syscall.ECONNREFUSED):
		return "refused"
	case isErrno(err, syscall.ECONNRESET):
		return "reset"
	case isErrno(err, syscall.EADDRNOTAVAIL), isErrno(err, syscall.EADDRINUSE):
		return "no_source_port"
	case isErrno(err, syscall.EMFILE), isErrno(err, syscall.ENFILE):
		return "out_of_files"
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return "dial_timeout"
	}
	return "dial_error"
}

func isErrno(err error, no syscall.Errno) bool {
	for err != nil {
		if e, ok := err.(syscall.Errno); ok {
			return e == no
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// settle counts a first connect that ended, closing Ready after the last.
func (w *Worker) settle() {
	if w.settled.Add(1) >= int64(w.n) && (w.cfg.Channel == "" || w.subs.Load() >= w.stats.opened.Load()) {
		w.readyOne.Do(func() { close(w.ready) })
	}
}

// settleSub settles c's pending sub, if it has one: answered (confirmed or refused) or
// ended with the socket. Runs on c's loop.
func (w *Worker) settleSub(c *conn) {
	if c.subPending {
		c.subPending = false
		w.settleSubscribed()
	}
}

// settleSubscribed counts a first connect's answered subscription toward Ready.
func (w *Worker) settleSubscribed() {
	if w.subs.Add(1) >= w.stats.opened.Load() && w.settled.Load() >= int64(w.n) {
		w.readyOne.Do(func() { close(w.ready) })
	}
}

// opened runs on c's loop when its 101 arrives.
func (w *Worker) opened(c *conn) {
	c.state = connOpen
	w.stats.live.Add(1)
	c.ls.wheel.Stop(&c.timer)
	switch c.kind {
	case kindReconnect:
		w.stats.reconnected.Add(1)
		w.stats.mu.Lock()
		record(w.stats.reconnect, time.Since(c.downAt))
		if first := w.stats.firstDrop.Load(); first != 0 {
			w.stats.curve[int(time.Duration(time.Now().UnixNano()-first)/curveBucket)]++
		}
		w.stats.mu.Unlock()
		c.downAt, c.tries, c.hint = time.Time{}, 0, 0
	case kindChurn:
		w.pending.Add(-1)
		w.stats.mu.Lock()
		record(w.stats.connect, time.Since(c.dialAt))
		w.stats.mu.Unlock()
	default:
		w.pending.Add(-1)
		w.stats.opened.Add(1)
		w.stats.mu.Lock()
		record(w.stats.connect, time.Since(c.dialAt))
		w.stats.mu.Unlock()
	}
	if w.cfg.Channel != "" {
		c.subPending = c.kind == kindFirst
		c.write(1, []byte(`{"op":"sub","channel":"`+w.cfg.Channel+`"}`))
	}
	if c.kind == kindFirst {
		w.settle()
	}
	if w.cfg.Scenario == ScenarioEcho && w.cfg.Rate == 0 && w.running.Load() {
		w.sendEcho(c)
	}
}

// scheduleReconnect arms c's timer for its next reconnect. Runs on c's loop.
func (w *Worker) scheduleReconnect(c *conn) {
	c.state = connWaiting
	ls := c.ls
	ls.wheel.Schedule(&c.timer, time.Now().Add(w.backoff(c)))
	// The conn left ls.conns in OnClose; the timer keeps it alive until it fires.
}

// failedAgain counts one more failed reconnect. It stops at 255 rather than wrapping to
// 0, which would drop the backoff back to its base after 255 failures in a row.
func (c *conn) failedAgain() {
	if c.tries < math.MaxUint8 {
		c.tries++
	}
}

// backoff is the reconnect delay: the server's reconnectInMs hint, plus full jitter over
// an exponential (uniform in [0, min(max, base·2^tries))), so a drained node's clients
// spread their reconnects instead of arriving in one wave.
func (w *Worker) backoff(c *conn) time.Duration {
	ceiling := min(w.cfg.BackoffMax, w.cfg.BackoffBase<<min(c.tries, 20))
	return c.hint + time.Duration(rand.Int64N(int64(ceiling)+1))
}

// onTimer runs on a loop when a socket's timer fires.
func (ls *loopState) onTimer(c *conn) {
	switch c.state {
	case connHandshaking:
		c.cause = "handshake_timeout"
		_ = ls.el.Close(c.gc)
	case connWaiting:
		c.state = connDialing
		if !ls.w.stopping.Load() {
			select {
			case ls.w.dialq <- c:
			default:
				ls.w.stats.fail("dial_queue_full")
			}
		}
	}
}

// Run is the tick: it advances the wheel and does the scenario's paced work. It runs on
// the loop; loopState is the gnet.Runnable OnTick posts, so posting a tick does not
// allocate a method value.
func (ls *loopState) Run(context.Context) error {
	now := time.Now()
	ls.wheel.Advance(now, ls.fire)
	w := ls.w
	elapsed := now.Sub(ls.last).Seconds()
	if ls.last.IsZero() {
		elapsed = 0
	}
	ls.last = now
	if !w.running.Load() || len(ls.conns) == 0 {
		return nil
	}
	// Pace by the time that really passed: ticks posted to a busy loop arrive late.
	share := elapsed / float64(len(w.loopList()))
	switch {
	case w.cfg.Scenario == ScenarioEcho && w.cfg.Rate > 0:
		ls.credit += w.cfg.Rate * share
		// A failed write closes its socket inside the call, so the list can empty mid-loop.
		for ; ls.credit >= 1 && len(ls.conns) > 0; ls.credit-- {
			ls.next = (ls.next + 1) % len(ls.conns)
			if c := ls.conns[ls.next]; c.state == connOpen {
				w.sendEcho(c)
			}
		}
	case w.cfg.Scenario == ScenarioChurn && w.cfg.Rate > 0:
		ls.credit += w.cfg.Rate * share
		for ; ls.credit >= 1 && len(ls.conns) > 0; ls.credit-- {
			ls.next = (ls.next + 1) % len(ls.conns)
			c := ls.conns[ls.next]
			if c.state != connOpen {
				continue
			}
			c.byUs = true
			w.stats.churned.Add(1)
			_ = ls.el.Close(c.gc)
			w.pending.Add(1)
			select {
			case w.dialq <- &conn{w: w, kind: kindChurn}:
			default:
				w.pending.Add(-1)
				w.stats.fail("dial_queue_full")
			}
		}
	}
	return nil
}

// memAvailable returns the kernel's estimate of memory available for new work
// (/proc/meminfo MemAvailable), or the largest int64 when it cannot be read.
func memAvailable() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return math.MaxInt64
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return math.MaxInt64
}

// nopLogger silences gnet; the swarm reports errors in its own counters.
type nopLogger struct{}

func (nopLogger) Debugf(string, ...any) {}
func (nopLogger) Infof(string, ...any)  {}
func (nopLogger) Warnf(string, ...any)  {}
func (nopLogger) Errorf(string, ...any) {}
func (nopLogger) Fatalf(string, ...any) {}
