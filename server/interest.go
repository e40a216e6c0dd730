package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/wsreactor/wsreactor/fanout"
	"github.com/wsreactor/wsreactor/loop"
)

// loopMask is a set of event loops by index. Loops 63 and above share bit 63, so a node
// with more loops than that posts such messages to all of them (harmless, just less exact).
type loopMask uint64

func loopBit(index int) loopMask { return 1 << min(index, 63) }

// interestKind separates the two namespaces of interest.
type interestKind uint8

const (
	interestChannel interestKind = iota
	interestIdentity
)

// interest is the node-wide view of which loops want which channels and identities, and
// the single goroutine that turns changes in it into broker subscriptions.
//
// Loops call add and remove when their own count for a name goes 0->1 or 1->0; Deliver
// reads masks from broker goroutines. The worker reconciles the broker with the masks in
// the order changes were queued, then runs queued acks on their loops, so a client told
// "subscribed" is told so only after the broker has the subscription.
type interest struct {
	broker fanout.Broker
	log    *slog.Logger

	mu    sync.RWMutex
	masks [2]map[string]interestEntry

	qmu    sync.Mutex
	queue  []interestOp
	wake   chan struct{}
	active [2]map[string]bool // what the broker has; worker-owned
	done   chan struct{}
}

// interestOp is a queued reconcile (name set) or ack (fn set).
type interestOp struct {
	kind interestKind
	name string
	loop *loop.Loop
	fn   func()
}

func newInterest(b fanout.Broker, log *slog.Logger) *interest {
	in := &interest{
		broker: b, log: log,
		masks:  [2]map[string]interestEntry{{}, {}},
		active: [2]map[string]bool{{}, {}},
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	return in
}

// interestEntry is the loops interested in one name. Loops 63 and up share bit 63, so
// high counts how many of them hold interest, and the bit clears when the last lets go.
type interestEntry struct {
	mask loopMask
	high int32
}

// mask returns the loops interested in name. Safe for concurrent use.
func (in *interest) mask(kind interestKind, name string) loopMask {
	in.mu.RLock()
	defer in.mu.RUnlock()
	return in.masks[kind][name].mask
}

// add records that loop index now has interest in name. Runs on that loop.
func (in *interest) add(kind interestKind, name string, index int) {
	in.mu.Lock()
	e := in.masks[kind][name]
	was := e.mask
	e.mask |= loopBit(index)
	if index >= 63 {
		e.high++
	}
	in.masks[kind][name] = e
	in.mu.Unlock()
	if was == 0 {
		in.enqueue(interestOp{kind: kind, name: name})
	}
}

// remove records that loop index lost interest in name. Runs on that loop.
func (in *interest) remove(kind interestKind, name string, index int) {
	in.mu.Lock()
	e := in.masks[kind][name]
	if index >= 63 {
		if e.high--; e.high <= 0 {
			e.high, e.mask = 0, e.mask&^loopBit(63)
		}
	} else {
		e.mask &^= loopBit(index)
	}
	if e.mask == 0 {
		delete(in.masks[kind], name)
	} else {
		in.masks[kind][name] = e
	}
	in.mu.Unlock()
	if e.mask == 0 {
		in.enqueue(interestOp{kind: kind, name: name})
	}
}

// ack runs fn on l once every interest change queued before it is in effect at the broker.
func (in *interest) ack(l *loop.Loop, fn func()) {
	in.enqueue(interestOp{loop: l, fn: fn})
}

func (in *interest) enqueue(op interestOp) {
	in.qmu.Lock()
	in.queue = append(in.queue, op)
	in.qmu.Unlock()
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// run is the worker; it returns when ctx ends.
func (in *interest) run(ctx context.Context) {
	defer close(in.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-in.wake:
		}
		in.qmu.Lock()
		batch := in.queue
		in.queue = nil
		in.qmu.Unlock()
		in.apply(ctx, batch)
	}
}

// apply reconciles the broker with the masks for every name in batch, syncs once if
// anything changed, then posts the batch's acks, one Post per loop.
func (in *interest) apply(ctx context.Context, batch []interestOp) {
	changed := false
	acks := map[*loop.Loop][]func(){}
	for _, op := range batch {
		if op.fn != nil {
			acks[op.loop] = append(acks[op.loop], op.fn)
			continue
		}
		want := in.mask(op.kind, op.name) != 0
		if want == in.active[op.kind][op.name] {
			continue
		}
		var err error
		switch {
		case op.kind == interestChannel && want:
			err = in.broker.Subscribe(op.name)
		case op.kind == interestChannel:
			err = in.broker.Unsubscribe(op.name)
		case want:
			err = in.broker.Claim(op.name)
		default:
			err = in.broker.Release(op.name)
		}
		if err != nil {
			// Local delivery does not depend on the broker; retry the change later so
			// other nodes' messages come back without waiting for another interest change.
			in.log.Warn("broker interest change failed; retrying in 1s", "name", op.name, "want", want, "err", err)
			retry := interestOp{kind: op.kind, name: op.name}
			time.AfterFunc(time.Second, func() { in.enqueue(retry) })
			continue
		}
		changed = true
		if want {
			in.active[op.kind][op.name] = true
		} else {
			delete(in.active[op.kind], op.name)
		}
	}
	if changed {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := in.broker.Sync(sctx); err != nil {
			in.log.Warn("broker sync failed", "err", err)
		}
		cancel()
	}
	for l, fns := range acks {
		// Control work: not refused when the loop's message backlog is full.
		_ = l.PostControl(func() {
			for _, fn := range fns {
				fn()
			}
		})
	}
}
