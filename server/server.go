package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/fanout"
	"github.com/wsreactor/wsreactor/loop"
)

// Server is one wsreactor node. Create it with New, start it with Run; its methods are safe
// for concurrent use.
type Server struct {
	opts    Options
	log     *slog.Logger
	handler *loop.Handler
	metrics *serverMetrics

	ready     atomic.Bool   // /readyz: true from listening until the drain starts
	started   chan struct{} // closed when both listeners are up
	stopOnce  sync.Once
	drainOnce sync.Once
	stop      chan struct{} // closed by Shutdown
	stopped   chan struct{} // closed when Run has returned

	adminLn net.Listener

	broker    fanout.Broker        // set by Run before the engine starts
	interest  *interest            // likewise
	pubq      chan *fanout.Message // client publishes waiting for the broker
	pubqBytes atomic.Int64         // their payload bytes
	goodbye   []byte               // SERVER_SHUTDOWN frame written before close 1001
	chanLimit *channelLimiter      // nil without -channel-rate
}

// New validates opts (returning every problem at once) and builds a Server. It raises the
// open-file soft limit to the hard limit, since every socket costs a descriptor.
func New(opts Options) (*Server, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		started: make(chan struct{}),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
		pubq:    make(chan *fanout.Message, publishQueue),
	}
	env := appendShutdown(nil, opts.ReconnectHint.Milliseconds())
	s.goodbye = codec.AppendFrame(nil, codec.OpText, true, env)
	var app loop.App = &pubsubApp{s: s}
	if opts.App == AppEcho {
		app = echoApp{}
	}
	origins := make([]string, len(opts.AllowedOrigins))
	for i, o := range opts.AllowedOrigins {
		origins[i] = strings.ToLower(o)
	}
	g := &gate{App: app, origins: origins, maxConns: int64(opts.MaxConnections)}
	if opts.AuthHS256Secret != "" {
		g.auth = newAuthenticator(opts.AuthHS256Secret)
	}
	if opts.ChannelRate > 0 {
		s.chanLimit = newChannelLimiter(opts.ChannelRate)
	}
	s.metrics = newServerMetrics(
		func() float64 { return float64(s.handler.Active()) },
		func() float64 { return float64(s.handler.Queued()) },
	)
	h, err := loop.New(loop.Config{
		HandshakeTimeout: opts.HandshakeTimeout,
		Tick:             opts.Tick,
		Heartbeat:        opts.Heartbeat,
		IdleTimeout:      opts.IdleTimeout,
		MaxMessageBytes:  opts.MaxMessageBytes,
		SendBufferLimit:  int(opts.SendBufferLimit), // validated under 2 GiB
		ClientRate:       opts.ClientRate,
		MaxConns:         int64(opts.MaxConnections),
		App:              g,
		Observer:         s.metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.handler = h
	g.active = h.Active

	limit, err := raiseFileLimit()
	if err != nil {
		s.log.Warn("could not raise the open-file limit", "err", err)
	} else {
		s.log.Info("open-file limit", "soft", limit, "max_sockets", int64(limit)-reservedFiles)
		if opts.MaxConnections > 0 && uint64(opts.MaxConnections) > limit-reservedFiles {
			s.log.Warn("max-connections is above what the open-file limit allows; accepts will fail first",
				"max_connections", opts.MaxConnections, "nofile", limit)
		}
	}
	return s, nil
}

// Run starts the admin listener and the WebSocket engine and blocks until ctx is done or
// Shutdown completes; ctx ending starts a Shutdown bounded by DrainTimeout. It returns nil
// after a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	defer close(s.stopped)
	ln, err := net.Listen("tcp", s.opts.Admin)
	if err != nil {
		return fmt.Errorf("server: admin listener: %w", err)
	}
	s.adminLn = ln
	admin := &http.Server{Handler: s.adminMux(), ReadHeaderTimeout: 5 * time.Second}
	defer admin.Close()

	stopBroker, err := s.startBroker(ctx)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer stopBroker()
	// Serve the admin API only once the broker exists: /v1/* publishes through it.
	go func() { _ = admin.Serve(ln) }()

	engineErr := make(chan error, 1)
	go func() {
		engineErr <- gnet.Run(s.handler, "tcp://"+s.opts.Listen,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(s.opts.Loops),
			gnet.WithReusePort(s.opts.ReusePort),
			// SO_REUSEADDR, as net.Listen sets it: a drain closes TCP from this side, so a
			// restart would otherwise find the port held by TIME_WAIT for a minute.
			gnet.WithReuseAddr(true),
			gnet.WithTicker(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(gnetLogger{s.log.With("component", "gnet")}),
		)
	}()
	select {
	case <-s.handler.Booted():
	case err := <-engineErr:
		return fmt.Errorf("server: websocket listener: %w", err)
	}
	s.ready.Store(true)
	close(s.started)
	s.log.Info("listening", "ws", s.handler.Addr().String(), "admin", ln.Addr().String(),
		"app", s.opts.App, "loops", s.opts.Loops, "broker", s.opts.Broker, "node", s.opts.NodeID)

	select {
	case <-ctx.Done():
		dctx, cancel := context.WithTimeout(context.Background(), s.opts.DrainTimeout)
		s.drain(dctx)
		cancel()
		s.stopOnce.Do(func() { close(s.stop) })
	case <-s.stop:
	case err := <-engineErr:
		return fmt.Errorf("server: engine stopped: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.handler.Engine().Stop(sctx); err != nil && !errors.Is(err, context.Canceled) {
		s.log.Warn("engine stop", "err", err)
	}
	<-engineErr
	s.log.Info("stopped")
	return nil
}

// Started is closed once both listeners are up; Addr and AdminAddr are valid after it.
func (s *Server) Started() <-chan struct{} { return s.started }

// Addr returns the bound WebSocket listener address, or nil before Started.
func (s *Server) Addr() net.Addr { return s.handler.Addr() }

// AdminAddr returns the bound admin listener address, or nil before Started.
func (s *Server) AdminAddr() net.Addr {
	select {
	case <-s.started:
		return s.adminLn.Addr()
	default:
		return nil
	}
}

// Ready reports whether the node takes new connections (what /readyz answers).
func (s *Server) Ready() bool { return s.ready.Load() }

// engineStopBudget is the part of a Shutdown's time kept for stopping the engine.
const engineStopBudget = time.Second

// Shutdown drains the node and stops it, waiting for Run to return or ctx to end. The
// drain lasts at most DrainTimeout (less when ctx ends sooner), paces its closes over the
// first half of that, and closes what is left at its end. Safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	select {
	case <-s.started:
	default:
		return errors.New("server: Shutdown before Run started")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.DrainTimeout)
		defer cancel()
	}
	// Leave part of the time for stopping the engine after the sockets are gone (gnet
	// notices a stop request only every few hundred milliseconds).
	// The drain itself lasts at most DrainTimeout, as on SIGTERM.
	dl, _ := ctx.Deadline()
	dl = dl.Add(-min(engineStopBudget, time.Until(dl)/4))
	dctx, cancel := context.WithDeadline(ctx, minTime(dl, time.Now().Add(s.opts.DrainTimeout)))
	defer cancel()
	s.drain(dctx)
	s.stopOnce.Do(func() { close(s.stop) })
	select {
	case <-s.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("server: shutdown: %w", ctx.Err())
	}
}

// drain is DESIGN.md's drain: /readyz turns 503, new connections are refused, every socket
// gets SERVER_SHUTDOWN and close 1001 paced over the first half of the time to ctx's
// deadline, and whatever is still open at the deadline is closed with 1001. Only the first
// call drains; later calls wait like it.
func (s *Server) drain(ctx context.Context) {
	s.drainOnce.Do(func() {
		s.ready.Store(false)
		window := s.opts.DrainTimeout / 2
		if dl, ok := ctx.Deadline(); ok {
			window = time.Until(dl) / 2
		}
		s.log.Info("draining", "connections", s.handler.Active(), "window", window.String())
		s.handler.Drain(s.goodbye, window)
	})
	if !s.waitEmpty(ctx) {
		left := s.handler.Active()
		s.log.Warn("drain deadline passed; closing the rest", "connections", left)
		s.handler.CloseAll(codec.CloseGoingAway)
		wctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.waitEmpty(wctx)
	}
}

// waitEmpty polls until no connection is open or ctx ends; it reports which.
func (s *Server) waitEmpty(ctx context.Context) bool {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.handler.Active() > 0 {
		select {
		case <-ctx.Done():
			return s.handler.Active() == 0
		case <-tick.C:
		}
	}
	return true
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
