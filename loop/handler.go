package loop

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/timerwheel"
)

// Upgrade-failure reasons the loop itself reports; codec and the App report the others.
// Together they are the closed set of ws_upgrade_failures_total's reason label.
const (
	ReasonTimeout  = "timeout"
	ReasonCapacity = "capacity"
)

// ErrCapacity refuses an upgrade that would take the open connections past
// Config.MaxConns; RetryAfter goes with it, so refused clients come back after a second
// rather than at once. An App may refuse with them too, before the loop's own check.
var (
	ErrCapacity = &codec.HandshakeError{Status: 503, Reason: ReasonCapacity, Msg: "server at capacity"}
	RetryAfter  = []string{"Retry-After: 1"}
)

// Handler is the gnet.EventHandler. Create it with New, run it with gnet.Run, and use its
// exported methods from any goroutine unless a method says otherwise.
type Handler struct {
	gnet.BuiltinEventEngine
	cfg Config

	active   atomic.Int64 // upgraded connections open now, and upgrades writing their 101
	draining atomic.Bool  // set by Drain: new connections are closed on arrival
	stopped  atomic.Bool  // set by OnShutdown: Post refuses

	mu     sync.Mutex
	shards map[gnet.EventLoop]*shard // every loop that has had a connection
	// drainGoodbye and drainWindow are the drain's, for a loop registered after it began;
	// under mu.
	drainGoodbye []byte
	drainWindow  time.Duration
	list         atomic.Pointer[[]*shard] // copy of shards' values for lock-free iteration
	loops        atomic.Pointer[[]*Loop]  // the shards' Loop handles, in the same order

	engine gnet.Engine
	addr   net.Addr
	booted chan struct{}
}

// New returns a Handler for cfg, or every problem with cfg at once.
func New(cfg Config) (*Handler, error) {
	cfg.fill()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, shards: make(map[gnet.EventLoop]*shard), booted: make(chan struct{})}
	h.list.Store(&[]*shard{})
	h.loops.Store(&[]*Loop{})
	return h, nil
}

// Active returns the number of upgraded connections open now.
func (h *Handler) Active() int64 { return h.active.Load() }

// reserve counts one more connection active unless that would pass Config.MaxConns. It
// runs before the 101 is written, and compares and swaps rather than adding and then
// checking, so loops admitting at once never take the count past the limit, not even for
// an instant. Runs on any loop.
func (h *Handler) reserve() bool {
	for {
		n := h.active.Load()
		if h.cfg.MaxConns > 0 && n >= h.cfg.MaxConns {
			return false
		}
		if h.active.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Booted is closed once the engine listens; Addr and Engine are valid after it.
func (h *Handler) Booted() <-chan struct{} { return h.booted }

// Addr returns the bound listener address (valid after Booted).
func (h *Handler) Addr() net.Addr { return h.addr }

// Engine returns the running gnet engine (valid after Booted).
func (h *Handler) Engine() gnet.Engine { return h.engine }

// OnBoot records the engine and the bound address.
func (h *Handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.engine = eng
	if fd, err := eng.Dup(); err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			h.addr = sockaddrToTCP(sa)
		}
		_ = unix.Close(fd)
	}
	close(h.booted)
	return gnet.None
}

func sockaddrToTCP(sa unix.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return nil
}

// OnTick runs on gnet's ticker goroutine (not on a loop): it posts a wheel advance to each
// loop, skipping a loop whose previous tick has not run yet and one with nothing due
// before its wakeAt (so an idle loop is not woken at all). Ticks land on whole multiples
// of Config.Tick since the Unix epoch, so processes sharing a host tick together
// (timerwheel.UntilBoundary says why).
func (h *Handler) OnTick() (time.Duration, gnet.Action) {
	now := time.Now()
	delay := timerwheel.UntilBoundary(now, h.cfg.Tick)
	for _, sh := range *h.list.Load() {
		if sh.clock(now) < sh.wakeAt.Load() {
			continue // nothing due on this loop yet (shard.wakeAt)
		}
		if sh.ticking.CompareAndSwap(false, true) {
			if err := sh.el.Execute(context.Background(), (*tick)(sh)); err != nil {
				sh.ticking.Store(false)
			}
		}
	}
	return delay, gnet.None
}

// OnShutdown marks the engine stopping, so Post refuses work that would never run.
func (h *Handler) OnShutdown(gnet.Engine) { h.stopped.Store(true) }

// shardOf returns the shard of el, creating it on the loop's first connection. Runs on el.
func (h *Handler) shardOf(el gnet.EventLoop) *shard {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sh := h.shards[el]; sh != nil {
		return sh
	}
	sh := newShard(h, el, len(h.shards))
	if h.draining.Load() {
		// A drain began after this loop's first connection passed OnOpen's check, and did
		// not see this shard: it drains itself, from now.
		sh.startDrain(h.drainGoodbye, h.drainWindow)
	}
	h.shards[el] = sh
	list := append(append([]*shard(nil), *h.list.Load()...), sh)
	h.list.Store(&list)
	loops := append(append([]*Loop(nil), *h.loops.Load()...), &sh.pub)
	h.loops.Store(&loops)
	return sh
}

// OnOpen registers a new TCP connection in its loop's shard and arms its handshake deadline.
func (h *Handler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	if h.draining.Load() {
		return nil, gnet.Close
	}
	sh := h.shardOf(gc.EventLoop())
	c := &Conn{sh: sh}
	c.timer.Init(gc)
	gc.SetContext(c)
	sh.add(c)
	sh.now = time.Now()
	sh.schedule(&c.timer, sh.now.Add(h.cfg.HandshakeTimeout))
	return nil, gnet.None
}

// OnClose removes the connection from its shard, disarms its timer and tells the App.
func (h *Handler) OnClose(gc gnet.Conn, _ error) gnet.Action {
	c, _ := gc.Context().(*Conn)
	if c == nil || c.state == stateClosed {
		return gnet.None
	}
	sh := c.sh
	c.state = stateClosed
	sh.account(c, 0)
	sh.wheel.Stop(&c.timer)
	sh.remove(c)
	delete(sh.frags, c)
	gc.SetContext(nil)
	if c.upgraded() {
		code := c.closeCode
		if code == 0 {
			code = codec.CloseAbnormal
		}
		h.active.Add(-1)
		h.cfg.Observer.Closed(code, c.flags&flagPeerCode != 0)
		h.cfg.App.Closed(c)
	}
	return gnet.None
}

// crlfcrlf ends an HTTP request head.
var crlfcrlf = []byte("\r\n\r\n")

// OnTraffic handles inbound bytes by state: the handshake, frames, or a closing exchange.
func (h *Handler) OnTraffic(gc gnet.Conn) gnet.Action {
	c, _ := gc.Context().(*Conn)
	if c == nil {
		return gnet.Close
	}
	sh := c.sh
	sh.now = time.Now()
	c.lastRead = sh.clock(sh.now)
	switch c.state {
	case stateHandshake:
		return h.handshake(c)
	case stateOpen, stateClosing:
		return h.frames(c)
	default: // stateLinger: the peer has nothing more to say that we will read
		_, _ = gc.Discard(-1)
		return gnet.None
	}
}

// Loops returns the event loops that have had a connection. The slice is shared and
// must not be modified; a loop's first connection publishes a new one. Safe for
// concurrent use.
func (h *Handler) Loops() []*Loop { return *h.loops.Load() }

// Queued returns the outbound bytes gnet holds for all sockets, as of each socket's last
// write or the last tick. Safe for concurrent use.
func (h *Handler) Queued() int64 {
	var n int64
	for _, sh := range *h.list.Load() {
		n += sh.queued.Load()
	}
	return n
}

// Drain stops taking new connections (they are closed as they arrive) and closes every
// open connection with goodbye (an encoded frame, e.g. SERVER_SHUTDOWN; nil for none) then
// a close handshake with 1001. The closes are paced evenly over window by elapsed time,
// each loop closing its share on every tick, so clients do not all reconnect in one wave;
// a window of 0 closes everything at once. Safe for concurrent use; watch Active to see
// the connections leave, and CloseAll what is left at the deadline.
func (h *Handler) Drain(goodbye []byte, window time.Duration) {
	// Under mu, so a loop whose first connection is being registered now either is in the
	// list read here or sees draining set and starts its own drain (shardOf).
	h.mu.Lock()
	h.draining.Store(true)
	h.drainGoodbye, h.drainWindow = goodbye, window
	list := *h.list.Load()
	h.mu.Unlock()
	for _, sh := range list {
		_ = sh.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			sh.startDrain(goodbye, window)
			return nil
		}))
	}
}

// startDrain begins the shard's part of a drain: counts its open sockets and takes the
// first step of the schedule. Runs on the loop.
func (sh *shard) startDrain(goodbye []byte, window time.Duration) {
	sh.now = time.Now()
	open := 0
	for _, c := range sh.conns {
		if c.state == stateOpen {
			open++
		}
	}
	sh.drain = drainState{active: true, pacing: true, start: sh.now, window: window, total: open, goodbye: goodbye}
	sh.wakeAt.Store(0) // drainStep runs on every tick from now on
	sh.drainStep()
}

// CloseAll closes every connection now, open ones with a best-effort close frame carrying
// code. It is the end of a drain whose deadline passed. Safe for concurrent use.
func (h *Handler) CloseAll(code codec.CloseCode) {
	for _, sh := range *h.list.Load() {
		_ = sh.pub.PostControl(func() {
			for i := len(sh.conns) - 1; i >= 0; i-- {
				if i < len(sh.conns) {
					sh.conns[i].abort(code)
				}
			}
		})
	}
}
