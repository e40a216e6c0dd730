package fanout

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// waitFor is how long a poll waits: generous, since the tests run under -race next to
// other packages on small machines.
const waitFor = 10 * time.Second

// recorder is a fake Deliverer that keeps every message it is given.
type recorder struct {
	mu   sync.Mutex
	msgs []*Message
}

func (r *recorder) Deliver(m *Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

func (r *recorder) all() []*Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Message(nil), r.msgs...)
}

// waitN polls until r holds at least n messages and returns them.
func (r *recorder) waitN(t *testing.T, n int) []*Message {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		msgs := r.all()
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d messages within %v, want %d: %s", len(msgs), waitFor, n, describe(msgs))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func describe(msgs []*Message) string {
	s := "["
	for i, m := range msgs {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("{kind=%d ch=%q to=%q from=%q data=%s}", m.Kind, m.Channel, m.To, m.From, m.Data)
	}
	return s + "]"
}

// startNATS runs a NATS server in process on a free loopback port.
func startNATS(t *testing.T) *natsserver.Server {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(waitFor) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// newBroker connects a NATS broker to ns, delivering to a fresh recorder, and closes it
// at the end of the test.
func newBroker(t *testing.T, ns *natsserver.Server, node string, routing Routing) (*NATS, *recorder) {
	t.Helper()
	b, rec := newBrokerNoCleanup(t, ns, node, routing)
	t.Cleanup(func() { _ = b.Close() })
	return b, rec
}

// newBrokerNoCleanup is newBroker for a test that closes the broker itself.
func newBrokerNoCleanup(t *testing.T, ns *natsserver.Server, node string, routing Routing) (*NATS, *recorder) {
	t.Helper()
	rec := &recorder{}
	b, err := NewNATS(NATSConfig{
		URL: ns.ClientURL(), NodeID: node, Routing: routing, Deliverer: rec,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("NewNATS: %v", err)
	}
	syncBroker(t, b)
	return b, rec
}

func syncBroker(t *testing.T, b *NATS) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := b.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// subsOn returns how many subscriptions on ns would receive a publish to subject.
func subsOn(t *testing.T, ns *natsserver.Server, subject string) int {
	t.Helper()
	sz, err := ns.Subsz(&natsserver.SubszOptions{Subscriptions: true, Test: subject})
	if err != nil {
		t.Fatalf("Subsz: %v", err)
	}
	return len(sz.Subs)
}

// waitSubs polls until exactly want subscriptions on ns match subject.
func waitSubs(t *testing.T, ns *natsserver.Server, subject string, want int) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		got := subsOn(t, ns, subject)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscriptions match %s after %v, want %d", got, subject, waitFor, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// sameMessage reports how got, received through NATS, differs from want, the original.
func sameMessage(got, want *Message) string {
	switch {
	case got.Kind != want.Kind:
		return fmt.Sprintf("Kind = %d, want %d", got.Kind, want.Kind)
	case got.Channel != want.Channel:
		return fmt.Sprintf("Channel = %q, want %q", got.Channel, want.Channel)
	case got.To != want.To:
		return fmt.Sprintf("To = %q, want %q", got.To, want.To)
	case got.From != want.From:
		return fmt.Sprintf("From = %q, want %q", got.From, want.From)
	case string(got.Data) != string(want.Data):
		return fmt.Sprintf("Data = %s, want %s", got.Data, want.Data)
	case got.Traceparent != want.Traceparent:
		return fmt.Sprintf("Traceparent = %q, want %q", got.Traceparent, want.Traceparent)
	case want.Published.IsZero() != got.Published.IsZero():
		return fmt.Sprintf("Published = %v, want %v", got.Published, want.Published)
	case got.Published.Sub(want.Published).Abs() > time.Microsecond:
		return fmt.Sprintf("Published = %v, want %v (close to)", got.Published, want.Published)
	}
	return ""
}

// TestNATSPublish publishes each kind of message on one broker and checks that it is
// delivered locally first (the very message) and reaches a second broker intact.
func TestNATSPublish(t *testing.T) {
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	now := time.Now()
	tests := []struct {
		name    string
		routing Routing
		msg     Message
	}{
		{name: "channel", routing: RoutingDirected, msg: Message{Kind: KindChannel, Channel: "room:1", Data: []byte(`{"n":1}`), Published: now}},
		{name: "channel dotted with trace", routing: RoutingBroadcast, msg: Message{Kind: KindChannel, Channel: "a.b=c", Data: []byte(`"x"`), Traceparent: tp, Published: now}},
		{name: "direct directed from client", routing: RoutingDirected, msg: Message{Kind: KindDirect, To: "bob", From: "alice", Data: []byte(`[1,2]`), Traceparent: tp, Published: now}},
		{name: "direct directed from admin", routing: RoutingDirected, msg: Message{Kind: KindDirect, To: "b.o *b>", Data: []byte(`null`), Published: now}},
		{name: "direct broadcast routing", routing: RoutingBroadcast, msg: Message{Kind: KindDirect, To: "bób", From: "al ice", Data: []byte(`7`), Published: now}},
		{name: "broadcast", routing: RoutingDirected, msg: Message{Kind: KindBroadcast, Data: []byte(`{"all":true}`), Traceparent: tp, Published: now}},
		{name: "no published time", routing: RoutingDirected, msg: Message{Kind: KindChannel, Channel: "c", Data: []byte(`1`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := startNATS(t)
			pub, pubRec := newBroker(t, ns, "pub", tt.routing)
			sub, subRec := newBroker(t, ns, "sub", tt.routing)
			switch tt.msg.Kind {
			case KindChannel:
				if err := sub.Subscribe(tt.msg.Channel); err != nil {
					t.Fatalf("Subscribe: %v", err)
				}
			case KindDirect:
				if err := sub.Claim(tt.msg.To); err != nil {
					t.Fatalf("Claim: %v", err)
				}
			}
			syncBroker(t, sub)

			m := tt.msg
			if err := pub.Publish(&m); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			// Local delivery has happened when Publish returns, with the very message.
			if local := pubRec.all(); len(local) != 1 || local[0] != &m {
				t.Fatalf("local deliveries after Publish = %s, want exactly the published message", describe(local))
			}
			got := subRec.waitN(t, 1)
			if len(got) != 1 {
				t.Fatalf("remote deliveries = %s, want 1", describe(got))
			}
			if diff := sameMessage(got[0], &tt.msg); diff != "" {
				t.Fatalf("remote message differs: %s", diff)
			}
		})
	}
}

// TestNATSNoEcho checks that a broker interested in its own publish delivers it once (the
// local delivery), not a second time when NATS would echo it back.
func TestNATSNoEcho(t *testing.T) {
	tests := []struct {
		name    string
		routing Routing
		msg     Message
	}{
		{name: "channel", routing: RoutingDirected, msg: Message{Kind: KindChannel, Channel: "room", Data: []byte(`1`)}},
		{name: "direct directed", routing: RoutingDirected, msg: Message{Kind: KindDirect, To: "bob", Data: []byte(`2`)}},
		{name: "direct broadcast routing", routing: RoutingBroadcast, msg: Message{Kind: KindDirect, To: "bob", Data: []byte(`3`)}},
		{name: "broadcast", routing: RoutingBroadcast, msg: Message{Kind: KindBroadcast, Data: []byte(`4`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := startNATS(t)
			a, aRec := newBroker(t, ns, "a", tt.routing)
			b, _ := newBroker(t, ns, "b", tt.routing)
			for _, x := range []*NATS{a, b} {
				if err := x.Subscribe("room"); err != nil {
					t.Fatal(err)
				}
				if err := x.Claim("bob"); err != nil {
					t.Fatal(err)
				}
				if err := x.Subscribe("marker"); err != nil {
					t.Fatal(err)
				}
				syncBroker(t, x)
			}
			m := tt.msg
			m.Published = time.Now()
			if err := a.Publish(&m); err != nil {
				t.Fatal(err)
			}
			syncBroker(t, a)
			// The server queues any echo to a before it handles b's marker, and a's
			// connection is FIFO: once the marker is in, an echo would be too.
			if err := b.Publish(&Message{Kind: KindChannel, Channel: "marker", Data: []byte(`"m"`), Published: time.Now()}); err != nil {
				t.Fatal(err)
			}
			got := aRec.waitN(t, 2)
			if len(got) != 2 || got[0] != &m || got[1].Channel != "marker" {
				t.Fatalf("a's deliveries = %s, want its own message once, then the marker", describe(got))
			}
		})
	}
}

// TestNATSInterest checks that Subscribe, Unsubscribe, Claim and Release change the NATS
// server's subscriptions, Claim/Release only under directed routing, and that repeated
// calls are idempotent.
func TestNATSInterest(t *testing.T) {
	tests := []struct {
		name      string
		routing   Routing
		wantClaim int // subscriptions on bob's identity subject after Claim
	}{
		{name: "directed", routing: RoutingDirected, wantClaim: 1},
		{name: "broadcast", routing: RoutingBroadcast, wantClaim: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := startNATS(t)
			b, _ := newBroker(t, ns, "n", tt.routing)
			base := ns.NumSubscriptions()
			ch := ChannelSubject("room:1")
			id := IdentitySubject("bob")

			waitSubs(t, ns, SubjectAll, 1)
			wantDirect := 0
			if tt.routing == RoutingBroadcast {
				wantDirect = 1
			}
			waitSubs(t, ns, SubjectDirect, wantDirect)

			for range 2 { // the second call changes nothing
				if err := b.Subscribe("room:1"); err != nil {
					t.Fatalf("Subscribe: %v", err)
				}
				syncBroker(t, b)
				if got := ns.NumSubscriptions(); got != base+1 {
					t.Fatalf("NumSubscriptions after Subscribe = %d, want %d", got, base+1)
				}
				waitSubs(t, ns, ch, 1)
			}
			waitSubs(t, ns, ChannelSubject("room:2"), 0)

			for range 2 {
				if err := b.Claim("bob"); err != nil {
					t.Fatalf("Claim: %v", err)
				}
				syncBroker(t, b)
				waitSubs(t, ns, id, tt.wantClaim)
				if got := ns.NumSubscriptions(); got != base+1+uint32(tt.wantClaim) {
					t.Fatalf("NumSubscriptions after Claim = %d, want %d", got, base+1+uint32(tt.wantClaim))
				}
			}
			if got, want := b.Subscriptions(), 2+wantDirect+tt.wantClaim; got != want {
				t.Fatalf("Subscriptions() = %d, want %d", got, want)
			}

			for range 2 {
				if err := b.Release("bob"); err != nil {
					t.Fatalf("Release: %v", err)
				}
				if err := b.Unsubscribe("room:1"); err != nil {
					t.Fatalf("Unsubscribe: %v", err)
				}
				syncBroker(t, b)
				waitSubs(t, ns, id, 0)
				waitSubs(t, ns, ch, 0)
				if got := ns.NumSubscriptions(); got != base {
					t.Fatalf("NumSubscriptions after Unsubscribe and Release = %d, want %d", got, base)
				}
			}
		})
	}
}

// TestNATSDirectedReachesOnlyOwners checks that under directed routing a direct message
// goes only to the brokers that claimed the identity.
func TestNATSDirectedReachesOnlyOwners(t *testing.T) {
	ns := startNATS(t)
	pub, _ := newBroker(t, ns, "pub", RoutingDirected)
	owner, ownerRec := newBroker(t, ns, "owner", RoutingDirected)
	other, otherRec := newBroker(t, ns, "other", RoutingDirected)
	if err := owner.Claim("bob"); err != nil {
		t.Fatal(err)
	}
	if err := other.Claim("alice"); err != nil {
		t.Fatal(err)
	}
	for _, b := range []*NATS{owner, other} {
		if err := b.Subscribe("marker"); err != nil {
			t.Fatal(err)
		}
		syncBroker(t, b)
	}
	if err := pub.Publish(&Message{Kind: KindDirect, To: "bob", Data: []byte(`"for bob"`), Published: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(&Message{Kind: KindChannel, Channel: "marker", Data: []byte(`"m"`), Published: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if got := ownerRec.waitN(t, 2); len(got) != 2 || got[0].To != "bob" || got[1].Channel != "marker" {
		t.Fatalf("owner got %s, want the direct message then the marker", describe(got))
	}
	if got := otherRec.waitN(t, 1); len(got) != 1 || got[0].Channel != "marker" {
		t.Fatalf("non-owner got %s, want only the marker", describe(got))
	}
}

// TestNATSSyncAndOutage checks Sync while connected and while NATS is down, and that a
// publish during the outage fails (it is not buffered) while still delivering locally.
func TestNATSSyncAndOutage(t *testing.T) {
	ns := startNATS(t)
	b, rec := newBroker(t, ns, "n", RoutingDirected)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := b.Sync(ctx); err != nil {
		t.Fatalf("Sync while connected = %v, want nil", err)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	deadline := time.Now().Add(waitFor)
	for b.nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("the broker still reports a connection after NATS shut down")
		}
		time.Sleep(2 * time.Millisecond)
	}
	start := time.Now()
	if err := b.Sync(ctx); err != nil {
		t.Fatalf("Sync while disconnected = %v, want nil", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Sync while disconnected took %v, want an immediate return", d)
	}
	m := &Message{Kind: KindChannel, Channel: "c", Data: []byte(`1`), Published: time.Now()}
	if err := b.Publish(m); err == nil {
		t.Fatal("Publish while disconnected = nil, want an error (publishes are not buffered)")
	}
	if got := rec.all(); len(got) != 1 || got[0] != m {
		t.Fatalf("local deliveries = %s, want the message delivered locally despite the outage", describe(got))
	}
	if err := b.Subscribe("while-down"); err != nil {
		t.Fatalf("Subscribe while disconnected = %v, want nil (restored on reconnect)", err)
	}
}

// TestNATSCloseStopsPublish checks that Publish fails after Close.
func TestNATSCloseStopsPublish(t *testing.T) {
	ns := startNATS(t)
	b, _ := newBrokerNoCleanup(t, ns, "n", RoutingDirected)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Publish(&Message{Kind: KindBroadcast, Data: []byte(`1`)}); err == nil {
		t.Fatal("Publish after Close = nil, want an error")
	}
	if n := b.Subscriptions(); n != 0 {
		t.Fatalf("Subscriptions after Close = %d, want 0", n)
	}
	waitSubs(t, ns, SubjectAll, 0)
}
