package loop

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/timerwheel"
)

// shard is one event loop's state. Every field but ticking is touched only on that loop.
type shard struct {
	h     *Handler
	pub   Loop // the handle Apps see
	el    gnet.EventLoop
	conns []*Conn          // dense registry; Conn.idx is the position
	frags map[*Conn][]byte // reassembly of fragmented messages in flight, by connection
	wheel *timerwheel.Wheel[gnet.Conn]
	epoch time.Time // loop clock zero; set before the shard is published, then read-only
	now   time.Time // refreshed on each tick and each read event
	fire  func(gnet.Conn)

	req codec.Request // handshake scratch
	buf []byte        // encode scratch
	hdr []byte        // frame header scratch for writev
	iov [2][]byte     // writev scratch

	congested []*Conn // connections whose outbound buffer was non-empty at last look

	drain drainState // set while draining

	// ticking is set while a tick is posted and not yet run, so a slow loop never
	// accumulates a backlog of ticks. Written by the tick goroutine and the loop.
	ticking atomic.Bool
	// wakeAt is when, on the loop clock, the next tick has work: the wheel's Next, or 0
	// (every tick) while a drain or congested sockets need the tick's other work, or
	// MaxInt64 with nothing to do. OnTick posts no tick before it, so a loop with no
	// deadline near sleeps instead of waking each tick to find nothing: a posted tick
	// costs an eventfd write, an epoll round and two small allocations in gnet's task
	// queue. Written on the loop (schedule, publishWake), read by the tick goroutine.
	wakeAt atomic.Int64

	// postMu guards posted, the FIFO of functions Post has queued for the loop; postSeq,
	// the last number given to one; postSpare, a drained FIFO kept for reuse; and
	// postScheduled, set while a runPosted is queued in gnet or left to the next tick, so
	// at most one is.
	postMu        sync.Mutex
	posted        []postedFn
	postSpare     []postedFn
	postSeq       uint64
	postedBytes   int64 // frame bytes of posted work not yet run
	postScheduled bool
	// postChain counts the batches of posted work run back to back since the loop last
	// polled for I/O, and postChainStart is when the first of them began. Loop-owned.
	postChain      int
	postChainStart time.Time
	// queued is the sum of Conn.queued over the shard; written on the loop, read by
	// metrics scrapes.
	queued atomic.Int64
}

// account records that gnet holds q outbound bytes for c. Runs on the loop.
func (sh *shard) account(c *Conn, q int) {
	// The shard total moves by exactly what c's own 32-bit count moves, so it cannot
	// drift when a socket holds more than 2 GiB (possible with no SendBufferLimit).
	q32 := int32(min(q, math.MaxInt32))
	sh.queued.Add(int64(q32) - int64(c.queued))
	c.queued = q32
	if q > 0 && c.flags&flagCongested == 0 {
		c.flags |= flagCongested
		sh.congested = append(sh.congested, c)
		sh.wakeAt.Store(0) // recheckCongested runs on every tick from now on
	}
}

// recheckCongested refreshes the outbound accounting of connections that had bytes
// queued, dropping those that drained or closed. Runs on each tick.
func (sh *shard) recheckCongested() {
	keep := sh.congested[:0]
	for _, c := range sh.congested {
		if c.state == stateClosed {
			c.flags &^= flagCongested
			continue
		}
		sh.account(c, c.gc().OutboundBuffered())
		if c.queued == 0 {
			c.flags &^= flagCongested
			continue
		}
		keep = append(keep, c)
	}
	clear(sh.congested[len(keep):])
	sh.congested = keep
}

// drainStep closes open connections with goodbye and 1001, as many as the drain's
// schedule says are due by now: the shard's open connections at the start of the drain,
// spread evenly over the window by elapsed time (not by ticks, which arrive late on a busy
// loop). Connections still in their handshake are closed as met, outside the count; one
// held for its welcome (Conn.Hold) waits, so the goodbye never comes before the welcome,
// until the window is over, when it is closed without the goodbye. Runs when the drain
// starts and on each tick after, until every counted connection is closed.
func (sh *shard) drainStep() {
	d := &sh.drain
	elapsed := sh.now.Sub(d.start)
	due := d.total
	if elapsed < d.window {
		due = int(int64(d.total)*int64(elapsed)/int64(d.window)) + 1
	}
	i := len(sh.conns) - 1
	for ; i >= 0 && d.done < due; i-- {
		if i >= len(sh.conns) {
			continue
		}
		switch c := sh.conns[i]; {
		case c.state == stateHandshake:
			c.hardClose()
		case c.state != stateOpen:
		case c.Held() && elapsed < d.window:
		default:
			d.done++
			if d.goodbye != nil && !c.Held() { // past the window: the close alone
				if !c.WriteFrame(d.goodbye) {
					continue
				}
				sh.h.cfg.Observer.Sent(1)
			}
			c.Close(codec.CloseGoingAway, "server shutdown")
		}
	}
	// Nothing left to pace once every counted socket is closed, or once the window is over
	// and a whole scan found nothing more to close (the rest left by themselves): the loop
	// may sleep between timers again.
	if d.done >= d.total || (elapsed >= d.window && i < 0) {
		d.pacing = false
	}
}

// drainState is a shard's drain schedule. Loop-owned.
type drainState struct {
	active  bool // the drain has started; never cleared
	pacing  bool // closes are still due: drainStep runs on every tick
	start   time.Time
	window  time.Duration
	total   int // open connections when the drain started
	done    int // closes started so far
	goodbye []byte
}

func newShard(h *Handler, el gnet.EventLoop, index int) *shard {
	now := time.Now()
	sh := &shard{h: h, el: el, epoch: now, now: now, hdr: make([]byte, 0, codec.MaxHeaderSize)}
	sh.pub = Loop{sh: sh, index: index}
	sh.frags = map[*Conn][]byte{}
	sh.wheel = timerwheel.New[gnet.Conn](h.cfg.Tick, now)
	sh.fire = sh.onTimer
	return sh
}

func (sh *shard) add(c *Conn) {
	c.idx = int32(len(sh.conns))
	sh.conns = append(sh.conns, c)
}

func (sh *shard) remove(c *Conn) {
	last := len(sh.conns) - 1
	moved := sh.conns[last]
	sh.conns[c.idx] = moved
	moved.idx = c.idx
	sh.conns[last] = nil
	sh.conns = sh.conns[:last]
	// Give memory back after a mass disconnect instead of pinning the peak forever.
	if cap(sh.conns) > 1024 && len(sh.conns) < cap(sh.conns)/4 {
		sh.conns = append([]*Conn(nil), sh.conns...)
	}
}

// tick is the Runnable posted to the loop by the tick goroutine.
type tick shard

// Run advances the shard's wheel; it runs on the loop.
func (t *tick) Run(context.Context) error {
	sh := (*shard)(t)
	sh.ticking.Store(false)
	sh.now = time.Now()
	sh.wheel.Advance(sh.now, sh.fire)
	if len(sh.congested) > 0 {
		sh.recheckCongested()
	}
	if sh.drain.pacing {
		sh.drainStep()
	}
	sh.publishWake()
	return nil
}

// schedule arms t for at in the shard's wheel and, when at is before the published
// wake-up, brings that forward so the tick goroutine posts a tick in time. Every wheel
// Schedule outside Advance goes through here; inside Advance, publishWake at the end of
// the tick covers them. Runs on the loop.
func (sh *shard) schedule(t *timerwheel.Timer[gnet.Conn], at time.Time) {
	sh.wheel.Schedule(t, at)
	if ns := sh.clock(at); ns < sh.wakeAt.Load() {
		sh.wakeAt.Store(ns)
	}
}

// publishWake sets wakeAt after a tick's work. The tick goroutine may read the old value
// just before the store and skip one tick it should have posted; the next tick then runs
// the timer, one tick later than the wheel's usual at-most-one-tick lateness. Runs on the
// loop.
func (sh *shard) publishWake() {
	next, ok := sh.wheel.Next()
	switch {
	case sh.drain.pacing || len(sh.congested) > 0:
		sh.wakeAt.Store(0)
	case ok:
		sh.wakeAt.Store(sh.clock(next))
	default:
		sh.wakeAt.Store(math.MaxInt64)
	}
}

// onTimer runs on the loop when a connection's one timer fires; what it means depends on
// the connection's state. The timer's value is the gnet connection (see Conn.timer).
func (sh *shard) onTimer(gc gnet.Conn) {
	c, _ := gc.Context().(*Conn)
	if c == nil { // cannot happen: OnClose stops the timer before it clears the context
		return
	}
	switch c.state {
	case stateHandshake:
		sh.h.cfg.Observer.UpgradeFailed(ReasonTimeout)
		c.hardClose()
	case stateOpen:
		sh.heartbeat(c)
	case stateClosing:
		// No close reply yet. While gnet still holds bytes for the peer, closing now would
		// discard messages accepted before the close: a peer that read some of them since
		// the last look is a slow reader, not a dead one, and during a drain any such
		// peer may take until the drain's deadline (CloseAll ends it there). Either gets
		// another CloseTimeout.
		if q := c.gc().OutboundBuffered(); q > 0 && (outboundMark(q) < c.expires || sh.drain.active) {
			c.expires = outboundMark(q)
			sh.schedule(&c.timer, sh.now.Add(sh.h.cfg.CloseTimeout))
			return
		}
		c.hardClose()
	case stateLinger:
		c.hardClose()
	}
}

// heartbeat closes c when its credentials expired, reaps it when it has been silent for
// the idle timeout, and pings it when its ping time has come; then it re-arms c's one
// timer for whichever of the three comes first. Reads never touch the wheel: lastRead is
// compared here, lazily.
func (sh *shard) heartbeat(c *Conn) {
	cfg := &sh.h.cfg
	now := sh.clock(sh.now)
	if c.expires != 0 && c.untilExpiry(sh.now) <= 0 {
		c.Close(codec.CloseTokenExpired, "token expired")
		return
	}
	if now >= c.lastRead+int64(cfg.IdleTimeout) {
		cfg.Observer.ZombieReaped()
		c.abort(codec.CloseIdleTimeout)
		return
	}
	if now >= c.nextPing {
		// The next ping counts from this one's send time (the clock read at the write, not
		// the tick's): the pong's RTT is measured from nextPing less the heartbeats since.
		sent := sh.clock(time.Now())
		_, _ = c.gc().Write(codec.PingFrame)
		if !c.afterWrite(len(codec.PingFrame)) {
			return
		}
		c.nextPing = sent + int64(cfg.Heartbeat)
		c.setUnanswered(c.unanswered() + 1)
	}
	sh.arm(c)
}

// arm schedules an open connection's timer for its next deadline: ping, idle or expiry.
func (sh *shard) arm(c *Conn) {
	next := min(c.nextPing, c.lastRead+int64(sh.h.cfg.IdleTimeout))
	if c.expires != 0 {
		next = min(next, sh.clock(sh.now)+int64(c.untilExpiry(sh.now)))
	}
	sh.schedule(&c.timer, sh.epoch.Add(time.Duration(next)))
}

// Loop is an event loop as an App sees it: a stable index, a slot for the App's per-loop
// state, and a way to run work on the loop from any goroutine.
type Loop struct {
	sh    *shard
	index int
	// Value is the App's per-loop state. Touched only on this loop.
	Value any
}

// Index returns the loop's number, from 0, in the order loops received their first
// connection. Stable for the Handler's life.
func (l *Loop) Index() int { return l.index }

// Post runs fn on the loop. Functions posted to one loop run in the order they were
// posted, so a publisher's messages reach a socket in order. Safe for concurrent use; fn
// must not block. It refuses with ErrLoopBusy when the loop's backlog is full (a publisher
// faster than the loop can write), and with gnet's error when the engine is shutting down;
// either way fn will not run.
func (l *Loop) Post(fn func()) error { return l.post(fn, 0, true) }

// PostFrame is Post for work that writes a frame of n bytes: the bytes count against the
// loop's backlog budget (maxPostedBytes) until fn has run.
func (l *Loop) PostFrame(fn func(), n int) error { return l.post(fn, n, true) }

// PostControl is Post for small control work (acknowledgements, the end of a drain) that
// must not be refused for a full message backlog. It keeps the order of everything posted.
func (l *Loop) PostControl(fn func()) error { return l.post(fn, 0, false) }

func (l *Loop) post(fn func(), n int, bounded bool) error {
	sh := l.sh
	if sh.h.stopped.Load() {
		// Queued now, fn would wait for a runnable the stopping engine never runs.
		return ErrEngineStopped
	}
	sh.postMu.Lock()
	if bounded && (len(sh.posted) >= maxPosted || sh.postedBytes+int64(n) > maxPostedBytes) {
		sh.postMu.Unlock()
		return ErrLoopBusy
	}
	sh.postSeq++
	seq := sh.postSeq
	sh.posted = append(sh.posted, postedFn{seq: seq, fn: fn, bytes: n})
	sh.postedBytes += int64(n)
	schedule := !sh.postScheduled
	sh.postScheduled = true
	sh.postMu.Unlock()
	// fn goes into the loop's own FIFO, and one runnable at a time runs what it holds, in
	// order. One, because gnet runs every task queued, new arrivals included, before it
	// polls again: a runnable per Post under a publisher faster than the loop would keep
	// the loop from reads, accepts and its own ticks for as long as the flood lasts.
	if !schedule {
		return nil
	}
	err := sh.el.Execute(context.Background(), (*runPosted)(sh))
	if err != nil { // the engine is shutting down
		sh.postMu.Lock()
		for i := len(sh.posted) - 1; i >= 0; i-- {
			if sh.posted[i].seq == seq {
				sh.postedBytes -= int64(sh.posted[i].bytes)
				sh.posted = slices.Delete(sh.posted, i, i+1)
				break
			}
		}
		sh.postScheduled = false
		sh.postMu.Unlock()
	}
	return err
}

// maxPosted and maxPostedBytes bound the work waiting for one loop, so a publisher faster
// than the loop can write cannot grow the heap without bound: past either, Post refuses
// and the caller counts the message as failed. Both are seconds of backlog for a healthy
// loop; the byte budget is what holds when messages are large.
const (
	maxPosted      = 1 << 16
	maxPostedBytes = 64 << 20
)

// ErrLoopBusy is returned by Post when the loop's backlog is full.
var ErrLoopBusy = errors.New("loop: event loop backlog full")

// ErrEngineStopped is returned by Post once the engine is shutting down.
var ErrEngineStopped = errors.New("loop: engine shutting down")

// postedFn is a function waiting in a loop's FIFO; seq identifies it for removal when its
// runnable could not be queued.
type postedFn struct {
	seq   uint64
	fn    func()
	bytes int // counted against maxPostedBytes until fn runs
}

// Posted work that keeps arriving runs in batches back to back for at most postChainMax
// batches or postYieldAfter; the next batch is then queued from a timer postYieldGap
// later, by when gnet has finished its round of queued tasks and polls for I/O (it runs
// every queued task, new arrivals included, before polling again). Under a lighter load
// a batch finds the FIFO empty behind it and nothing waits.
const (
	postChainMax   = 4
	postYieldAfter = time.Millisecond
	postYieldGap   = 20 * time.Microsecond
)

// runPosted is the Runnable Post queues: it runs, on the loop, every function posted so
// far, then queues itself again (at once, or after postYieldGap) if more arrived.
type runPosted shard

func (r *runPosted) Run(ctx context.Context) error {
	sh := (*shard)(r)
	sh.postMu.Lock()
	batch := sh.posted
	sh.posted, sh.postSpare = sh.postSpare[:0], nil
	for _, p := range batch {
		sh.postedBytes -= int64(p.bytes)
	}
	sh.postMu.Unlock()
	start := time.Now()
	sh.now = start
	if sh.postChain == 0 {
		sh.postChainStart = start
	}
	for _, p := range batch {
		p.fn()
	}
	clear(batch) // drop the closures
	sh.postMu.Lock()
	if sh.postSpare == nil {
		sh.postSpare = batch[:0]
	}
	more := len(sh.posted) > 0
	sh.postScheduled = more
	sh.postMu.Unlock()
	if !more {
		sh.postChain = 0
		return nil
	}
	if sh.postChain++; sh.postChain < postChainMax && time.Since(sh.postChainStart) < postYieldAfter {
		if sh.el.Execute(ctx, r) == nil {
			return nil
		}
	} else {
		sh.postChain = 0
		time.AfterFunc(postYieldGap, func() {
			// Not once the engine is stopping (OnShutdown comes before gnet closes the
			// loops' pollers): the next Post then tries, and gets the error, itself.
			if sh.h.stopped.Load() || sh.el.Execute(context.Background(), r) != nil {
				sh.unschedulePosts()
			}
		})
		return nil
	}
	sh.unschedulePosts()
	return nil
}

// unschedulePosts records that no runnable is queued after Execute failed (the engine is
// stopping), so the next Post tries, and gets the error, itself.
func (sh *shard) unschedulePosts() {
	sh.postMu.Lock()
	sh.postScheduled = false
	sh.postMu.Unlock()
}

// Loop returns the event loop c lives on.
func (c *Conn) Loop() *Loop { return &c.sh.pub }

// Broadcast writes frame, an encoded server frame, to every upgraded connection of l and
// counts those that took it as sent. It returns how many took it, and how many missed it:
// held (Conn.Hold), closing (a close frame already sent, as in a drain) or closed by the
// write as slow consumers. It must run on l (from Post or an App callback).
func (l *Loop) Broadcast(frame []byte) (sent, missed int) {
	sh := l.sh
	// Backwards: a failed write closes that connection inside the call, and removal swaps
	// the last element into its slot, which going backwards has already been visited.
	for i := len(sh.conns) - 1; i >= 0; i-- {
		if i >= len(sh.conns) {
			continue
		}
		switch c := sh.conns[i]; {
		case !c.upgraded():
		case c.WriteFrame(frame):
			sent++
		default:
			missed++
		}
	}
	sh.h.cfg.Observer.Sent(sent)
	return sent, missed
}
