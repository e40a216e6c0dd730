package fanout

import (
	"context"
	"time"
)

// Kind says who a Message is for.
type Kind uint8

const (
	KindChannel   Kind = iota + 1 // every subscriber of Channel
	KindDirect                    // every connection of identity To
	KindBroadcast                 // every socket
)

// Message is one publish. The Broker does not modify it; Deliverers must not either, and
// may keep it (it is immutable once published).
type Message struct {
	Kind        Kind
	Channel     string    // KindChannel: the channel
	To          string    // KindDirect: the target identity
	From        string    // KindDirect: the sender's identity; "" for an admin send
	Data        []byte    // the payload, a JSON value
	Traceparent string    // W3C trace context of the publish, if any
	Published   time.Time // when the publish was accepted, for ws_fanout_lag_seconds
}

// Deliverer delivers a message to this node's local sockets. Brokers call it from their
// own goroutines, possibly concurrently; it must not block.
type Deliverer interface {
	Deliver(m *Message)
}

// Broker carries messages to every node that must deliver them, this one included.
type Broker interface {
	// Publish delivers m locally (through the Deliverer) and sends it to the other nodes.
	// An error means other nodes may not get it; local delivery has happened regardless.
	Publish(m *Message) error
	// Subscribe and Unsubscribe tell the broker this node's interest in a channel.
	Subscribe(channel string) error
	Unsubscribe(channel string) error
	// Claim and Release tell the broker this node holds (or no longer holds) connections
	// of an identity; only directed routing uses them.
	Claim(identity string) error
	Release(identity string) error
	// Sync returns once earlier interest changes are in effect at the broker.
	Sync(ctx context.Context) error
	// Close stops the broker; Publish fails after.
	Close() error
}

// Routing selects how direct messages find their node.
type Routing string

const (
	// RoutingBroadcast sends every direct message to every node, which filters locally:
	// no per-identity broker state, but every node pays for every send.
	RoutingBroadcast Routing = "broadcast"
	// RoutingDirected sends a direct message only to the nodes holding the identity,
	// through per-identity broker interest: one subscription per local identity.
	RoutingDirected Routing = "directed"
)

// Local is the in-process Broker of a single node: Publish delivers straight to the
// Deliverer and interest is a no-op.
type Local struct{ d Deliverer }

// NewLocal returns a Local broker delivering to d.
func NewLocal(d Deliverer) *Local { return &Local{d: d} }

func (l *Local) Publish(m *Message) error   { l.d.Deliver(m); return nil }
func (l *Local) Subscribe(string) error     { return nil }
func (l *Local) Unsubscribe(string) error   { return nil }
func (l *Local) Claim(string) error         { return nil }
func (l *Local) Release(string) error       { return nil }
func (l *Local) Sync(context.Context) error { return nil }
func (l *Local) Close() error               { return nil }
