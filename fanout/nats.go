package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

// NATS message headers of wsreactor's messages.
const (
	hdrFrom        = "Wsr-From"
	hdrTo          = "Wsr-To"
	hdrPublished   = "Wsr-Published" // unix nanoseconds
	hdrTraceparent = "traceparent"
)

// NATSConfig configures a NATS broker.
type NATSConfig struct {
	URL       string
	NodeID    string // connection name, for the NATS server's monitoring
	Routing   Routing
	Deliverer Deliverer
	Logger    *slog.Logger
	// OnDropped is told how many inbound messages were lost: the node fell behind NATS and
	// the client library dropped them, or one was not JSON in UTF-8. Called from NATS
	// goroutines.
	OnDropped func(n int)
}

// inboundQueue is how many received messages may wait for dispatch before NATS reports
// this node a slow consumer (and the messages are counted as dropped).
const inboundQueue = 1 << 16

// NATS is the Broker of a fleet: each node's NATS connection subscribes to what its
// sockets want. All received messages go through one Go channel and one dispatch
// goroutine, so the number of goroutines does not grow with the number of channels.
type NATS struct {
	cfg NATSConfig
	nc  *nats.Conn
	in  chan *nats.Msg
	log *slog.Logger

	mu   sync.Mutex
	subs map[string]*nats.Subscription // by subject

	dropped map[*nats.Subscription]int // last Dropped() seen per subscription; under mu
	// watched holds the subscriptions that have been slow consumers; under mu. The client
	// reports an episode once, at its first drop, and all subscriptions share one inbound
	// queue, so when a later episode starts is not observable from here: watchDrops reads
	// their counts each second for as long as they are held.
	watched map[*nats.Subscription]struct{}
	stop    chan struct{}
	done    chan struct{}
	closing sync.Once
}

// NewNATS connects to cfg.URL. The node starts even if NATS is not up yet: the client
// keeps reconnecting, and interest registered meanwhile is sent once connected.
func NewNATS(cfg NATSConfig) (*NATS, error) {
	if cfg.Deliverer == nil {
		return nil, errors.New("fanout: NATSConfig.Deliverer is required")
	}
	if cfg.Routing == "" {
		cfg.Routing = RoutingDirected
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &NATS{
		cfg:     cfg,
		in:      make(chan *nats.Msg, inboundQueue),
		log:     cfg.Logger.With("component", "nats"),
		subs:    make(map[string]*nats.Subscription),
		dropped: make(map[*nats.Subscription]int),
		watched: make(map[*nats.Subscription]struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	nc, err := nats.Connect(cfg.URL,
		nats.Name("wsreactor:"+cfg.NodeID),
		nats.NoEcho(), // this node delivers its own publishes locally, before NATS
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectBufSize(-1), // fail publishes while disconnected instead of buffering them blind
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { n.log.Warn("disconnected", "err", err) }),
		nats.ReconnectHandler(func(c *nats.Conn) { n.log.Info("reconnected", "url", c.ConnectedUrl()) }),
		nats.ErrorHandler(n.onAsyncError),
	)
	if err != nil {
		return nil, fmt.Errorf("fanout: nats connect %s: %w", cfg.URL, err)
	}
	n.nc = nc
	go n.dispatch()
	if err := n.subscribe(SubjectAll); err != nil {
		nc.Close()
		return nil, err
	}
	if cfg.Routing == RoutingBroadcast {
		if err := n.subscribe(SubjectDirect); err != nil {
			nc.Close()
			return nil, err
		}
	}
	return n, nil
}

func (n *NATS) onAsyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrSlowConsumer) && sub != nil {
		n.mu.Lock()
		delta := n.newDropsLocked(sub)
		if _, live := n.dropped[sub]; live {
			if len(n.watched) == 0 {
				go n.watchDrops()
			}
			n.watched[sub] = struct{}{}
		}
		n.mu.Unlock()
		n.reportDropped(delta)
		return
	}
	n.log.Warn("async error", "err", err)
}

// newDropsLocked returns how many messages sub dropped since the last look (Dropped is
// cumulative per subscription). A subscription this broker no longer holds reports
// nothing: its last drops were counted when it was dropped. n.mu is held.
func (n *NATS) newDropsLocked(sub *nats.Subscription) int {
	last, live := n.dropped[sub]
	if !live {
		return 0
	}
	d, err := sub.Dropped()
	if err != nil || d <= last {
		return 0
	}
	n.dropped[sub] = d
	return d - last
}

func (n *NATS) reportDropped(delta int) {
	if delta > 0 && n.cfg.OnDropped != nil {
		n.cfg.OnDropped(delta)
	}
}

// watchDrops counts the drops of the watched subscriptions once a second, until none is
// left (unsubscribe takes the last look at one) or the broker closes. Started by
// onAsyncError when watched turns non-empty.
func (n *NATS) watchDrops() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		n.mu.Lock()
		total := 0
		for sub := range n.watched {
			total += n.newDropsLocked(sub)
		}
		left := len(n.watched)
		n.mu.Unlock()
		n.reportDropped(total)
		if left == 0 {
			return
		}
	}
}

// dispatch turns received NATS messages into Messages for the Deliverer.
func (n *NATS) dispatch() {
	defer close(n.done)
	for {
		var msg *nats.Msg
		select {
		case msg = <-n.in:
		case <-n.stop:
			return
		}
		// Every node checks what it publishes, but anyone with access to NATS can publish
		// on these subjects: data that is not JSON in UTF-8 would reach clients inside text
		// frames they must fail (RFC 6455 §8.1). Such a message is dropped and counted.
		if !json.Valid(msg.Data) || !utf8.Valid(msg.Data) {
			n.reportDropped(1)
			continue
		}
		m := &Message{Data: msg.Data}
		if h := msg.Header; h != nil {
			m.From = h.Get(hdrFrom)
			m.Traceparent = h.Get(hdrTraceparent)
			if ns, err := strconv.ParseInt(h.Get(hdrPublished), 10, 64); err == nil {
				m.Published = time.Unix(0, ns)
			}
		}
		switch subj := msg.Subject; {
		case subj == SubjectAll:
			m.Kind = KindBroadcast
		case strings.HasPrefix(subj, subjectChannelPrefix):
			m.Kind, m.Channel = KindChannel, subj[len(subjectChannelPrefix):]
		case subj == SubjectDirect, strings.HasPrefix(subj, subjectIdentityPrefix):
			m.Kind, m.To = KindDirect, msg.Header.Get(hdrTo)
		default:
			continue
		}
		n.cfg.Deliverer.Deliver(m)
	}
}

// Publish delivers m locally, then publishes it to NATS.
func (n *NATS) Publish(m *Message) error {
	n.cfg.Deliverer.Deliver(m)
	var subj string
	switch m.Kind {
	case KindChannel:
		subj = ChannelSubject(m.Channel)
	case KindBroadcast:
		subj = SubjectAll
	case KindDirect:
		subj = SubjectDirect
		if n.cfg.Routing == RoutingDirected {
			subj = IdentitySubject(m.To)
		}
	default:
		return fmt.Errorf("fanout: publish: unknown kind %d", m.Kind)
	}
	msg := &nats.Msg{Subject: subj, Data: m.Data, Header: nats.Header{}}
	if !m.Published.IsZero() {
		// The zero time has no UnixNano; left out, the receiver keeps Published zero
		// ("unknown") instead of a date in 1754 that would poison ws_fanout_lag_seconds.
		msg.Header.Set(hdrPublished, strconv.FormatInt(m.Published.UnixNano(), 10))
	}
	if m.Kind == KindDirect {
		msg.Header.Set(hdrTo, m.To)
		if m.From != "" {
			msg.Header.Set(hdrFrom, m.From)
		}
	}
	if m.Traceparent != "" {
		msg.Header.Set(hdrTraceparent, m.Traceparent)
	}
	if err := n.nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("fanout: nats publish %s: %w", subj, err)
	}
	return nil
}

func (n *NATS) subscribe(subj string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.subs[subj] != nil {
		return nil
	}
	sub, err := n.nc.ChanSubscribe(subj, n.in)
	if err != nil {
		return fmt.Errorf("fanout: nats subscribe %s: %w", subj, err)
	}
	n.subs[subj] = sub
	n.dropped[sub] = 0
	return nil
}

func (n *NATS) unsubscribe(subj string) error {
	n.mu.Lock()
	sub := n.subs[subj]
	var delta int
	if sub != nil {
		delta = n.newDropsLocked(sub) // the last look: Dropped fails once unsubscribed
	}
	delete(n.subs, subj)
	delete(n.dropped, sub)
	delete(n.watched, sub)
	n.mu.Unlock()
	n.reportDropped(delta)
	if sub == nil {
		return nil
	}
	if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("fanout: nats unsubscribe %s: %w", subj, err)
	}
	return nil
}

func (n *NATS) Subscribe(channel string) error   { return n.subscribe(ChannelSubject(channel)) }
func (n *NATS) Unsubscribe(channel string) error { return n.unsubscribe(ChannelSubject(channel)) }

func (n *NATS) Claim(identity string) error {
	if n.cfg.Routing != RoutingDirected {
		return nil
	}
	return n.subscribe(IdentitySubject(identity))
}

func (n *NATS) Release(identity string) error {
	if n.cfg.Routing != RoutingDirected {
		return nil
	}
	return n.unsubscribe(IdentitySubject(identity))
}

// Sync flushes to the NATS server and waits for its answer, so earlier SUB and UNSUB
// lines are in effect. While disconnected it returns at once: the subscriptions are
// restored on reconnect.
func (n *NATS) Sync(ctx context.Context) error {
	if !n.nc.IsConnected() {
		return nil
	}
	if err := n.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("fanout: nats flush: %w", err)
	}
	return nil
}

// Subscriptions returns how many NATS subscriptions the broker holds (for tests and
// diagnostics).
func (n *NATS) Subscriptions() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.subs)
}

// Close closes the connection and stops dispatch; messages still queued are dropped.
// Safe to call more than once.
func (n *NATS) Close() error {
	n.closing.Do(func() {
		n.mu.Lock()
		total := 0
		for sub := range n.watched { // the last look: Dropped fails once closed
			total += n.newDropsLocked(sub)
		}
		n.mu.Unlock()
		n.reportDropped(total)
		n.nc.Close()
		n.mu.Lock()
		n.subs = map[string]*nats.Subscription{}
		n.mu.Unlock()
		close(n.stop)
	})
	<-n.done
	return nil
}
