package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/wsreactor/wsreactor/fanout"
	"github.com/wsreactor/wsreactor/server"
)

// psStartNATS runs a NATS server in process on port (-1 for a free one) and registers its
// shutdown as a cleanup. It retries for a while when the port is still taken (a restart
// on the port of a server that just shut down).
func psStartNATS(t testing.TB, port int) *natsserver.Server {
	t.Helper()
	deadline := time.Now().Add(psWait)
	for {
		ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
		if err != nil {
			t.Fatalf("nats server: %v", err)
		}
		go ns.Start()
		if ns.ReadyForConnections(psWait) {
			t.Cleanup(func() {
				ns.Shutdown()
				ns.WaitForShutdown()
			})
			return ns
		}
		ns.Shutdown()
		ns.WaitForShutdown()
		if time.Now().After(deadline) {
			t.Fatalf("nats server did not start on port %d within %v", port, psWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// psStartFleet starts count nodes (n1, n2, ...) sharing the NATS server ns.
func psStartFleet(t testing.TB, ns *natsserver.Server, routing fanout.Routing, count int) []*psNode {
	t.Helper()
	nodes := make([]*psNode, count)
	for i := range nodes {
		nodes[i] = psStartNode(t, server.Options{
			NodeID: fmt.Sprintf("n%d", i+1), Broker: server.BrokerNATS, NATSURL: ns.ClientURL(),
			Routing: routing, Loops: 2,
		})
	}
	return nodes
}

// psSubs returns how many subscriptions on ns would receive a publish to subject.
func psSubs(t testing.TB, ns *natsserver.Server, subject string) int {
	t.Helper()
	sz, err := ns.Subsz(&natsserver.SubszOptions{Subscriptions: true, Test: subject})
	if err != nil {
		t.Fatalf("Subsz: %v", err)
	}
	return len(sz.Subs)
}

// psWaitSubs polls until exactly want subscriptions on ns match subject.
func psWaitSubs(t testing.TB, ns *natsserver.Server, subject string, want int) {
	t.Helper()
	var got int
	eventually(t, psWait, func() bool { got = psSubs(t, ns, subject); return got == want },
		func() string { return fmt.Sprintf("%d subscriptions match %s, want %d", got, subject, want) })
}

var psRoutings = []struct {
	name    string
	routing fanout.Routing
}{
	{name: "directed", routing: fanout.RoutingDirected},
	{name: "broadcast", routing: fanout.RoutingBroadcast},
}

// TestFleetChannels checks channel publishes across three nodes sharing one NATS server:
// a publish on any node reaches subscribers on the others, NATS interest follows the
// local subscribers (subscribed on the first, unsubscribed after the last, whether it
// unsubscribes or disconnects), and unsubscribing stops delivery.
func TestFleetChannels(t *testing.T) {
	for _, rt := range psRoutings {
		t.Run(rt.name, func(t *testing.T) {
			ns := psStartNATS(t, -1)
			nodes := psStartFleet(t, ns, rt.routing, 3)
			subject := fanout.ChannelSubject("room:1")

			c1 := psDial(t, nodes[0], "c1")
			c1.sub(t, "marker")
			psWaitSubs(t, ns, subject, 0)
			c1.sub(t, "room:1")
			// "subscribed" comes only once the subscription is in effect at NATS.
			if got := psSubs(t, ns, subject); got != 1 {
				t.Fatalf("%d subscriptions on %s after subscribed, want 1", got, subject)
			}

			// Published on node 3, received on node 1, with the trace context.
			psAccepted(t, nodes[2], "/v1/publish", `{"channel":"room:1","data":{"hello":"from n3"}}`,
				http.Header{"Traceparent": {psTraceparent}})
			f := c1.expectMessage(t, "room:1", `{"hello":"from n3"}`)
			if f.Traceparent != psTraceparent {
				t.Fatalf("message %s: want traceparent %q carried across nodes", f, psTraceparent)
			}
			// And a client pub on node 2.
			p2 := psDial(t, nodes[1], "p2")
			p2.pub(t, "room:1", `"from p2"`)
			c1.expectMessage(t, "room:1", `"from p2"`)

			// Two subscribers on node 2: one NATS subscription for the node.
			c2a := psDial(t, nodes[1], "c2a")
			c2b := psDial(t, nodes[1], "c2b")
			c2a.sub(t, "room:1")
			c2b.sub(t, "room:1")
			psWaitSubs(t, ns, subject, 2)
			psPublish(t, nodes[2], "room:1", `1`)
			for _, c := range []*psClient{c1, c2a, c2b} {
				c.expectMessage(t, "room:1", `1`)
			}
			// The first leaves by unsub: node 2 keeps its interest.
			c2a.unsub(t, "room:1")
			psPublish(t, nodes[2], "room:1", `2`)
			c1.expectMessage(t, "room:1", `2`)
			c2b.expectMessage(t, "room:1", `2`)
			if got := psSubs(t, ns, subject); got != 2 {
				t.Fatalf("%d subscriptions on %s with one subscriber left on n2, want 2", got, subject)
			}
			// The last leaves by disconnecting: node 2 unsubscribes.
			c2b.close()
			psWaitSubs(t, ns, subject, 1)

			// Node 1's last subscriber unsubscribes: no more delivery, no more interest.
			c1.unsub(t, "room:1")
			psWaitSubs(t, ns, subject, 0)
			psPublish(t, nodes[2], "room:1", `"after unsub"`)
			psPublish(t, nodes[2], "marker", `"m"`)
			c1.expectMessage(t, "marker", `"m"`)
			c2a.expectNothing(t, 50*time.Millisecond)
		})
	}
}

// TestFleetDirect checks direct sends across nodes: an identity with connections on two
// nodes (and on the sending node) gets exactly one copy on each connection, from an admin
// send and from a client send, under both routings; under directed routing the NATS
// subscription of an identity exists while the node holds it and goes with its last
// connection.
func TestFleetDirect(t *testing.T) {
	for _, rt := range psRoutings {
		t.Run(rt.name, func(t *testing.T) {
			ns := psStartNATS(t, -1)
			nodes := psStartFleet(t, ns, rt.routing, 3)
			idSubject := fanout.IdentitySubject("bob")
			directed := rt.routing == fanout.RoutingDirected
			owners := func(k int) int { // subscriptions expected on bob's subject
				if directed {
					return k
				}
				return 0
			}

			bob1 := psDial(t, nodes[0], "bob")
			bob2 := psDial(t, nodes[1], "bob")
			bob2b := psDial(t, nodes[1], "bob") // a second tab on node 2: still one subscription
			bob3 := psDial(t, nodes[2], "bob")  // on the sending node itself
			bobs := []*psClient{bob1, bob2, bob2b, bob3}
			// The welcome is written before the node's claim reaches NATS; wait for it.
			psWaitSubs(t, ns, idSubject, owners(3))
			if !directed {
				psWaitSubs(t, ns, fanout.SubjectDirect, 3)
			}

			// Admin send on node 3: no from; the marker after it proves a single copy.
			psAccepted(t, nodes[2], "/v1/send", `{"to":"bob","data":{"n":1}}`, http.Header{"Traceparent": {psTraceparent}})
			psSend(t, nodes[2], "bob", `"marker-1"`)
			for _, b := range bobs {
				f := b.expectDirect(t, "", `{"n":1}`)
				if f.Traceparent != psTraceparent {
					t.Fatalf("direct %s: want traceparent %q", f, psTraceparent)
				}
				b.expectDirect(t, "", `"marker-1"`)
			}

			// Client send from alice on node 3.
			alice := psDial(t, nodes[2], "alice")
			alice.send(t, "bob", `{"n":2}`)
			alice.send(t, "bob", `"marker-2"`)
			for _, b := range bobs {
				b.expectDirect(t, "alice", `{"n":2}`)
				b.expectDirect(t, "alice", `"marker-2"`)
			}
			// And from node 1 to the other nodes.
			carol := psDial(t, nodes[0], "carol")
			carol.send(t, "bob", `{"n":3}`)
			carol.send(t, "bob", `"marker-3"`)
			for _, b := range bobs {
				b.expectDirect(t, "carol", `{"n":3}`)
				b.expectDirect(t, "carol", `"marker-3"`)
			}
			psWaitSubs(t, ns, fanout.IdentitySubject("alice"), owners(1))
			psWaitSubs(t, ns, fanout.IdentitySubject("carol"), owners(1))

			// Node 2 keeps its subscription while one of its two bobs remains, and drops it
			// with the last.
			bob2.close()
			psSend(t, nodes[0], "bob", `"three left"`)
			for _, b := range []*psClient{bob1, bob2b, bob3} {
				b.expectDirect(t, "", `"three left"`)
			}
			if got := psSubs(t, ns, idSubject); got != owners(3) {
				t.Fatalf("%d subscriptions on bob's subject with a bob left on every node, want %d", got, owners(3))
			}
			bob2b.close()
			psWaitSubs(t, ns, idSubject, owners(2))
			psSend(t, nodes[1], "bob", `"n1 and n3"`)
			bob1.expectDirect(t, "", `"n1 and n3"`)
			bob3.expectDirect(t, "", `"n1 and n3"`)

			bob1.close()
			bob3.close()
			psWaitSubs(t, ns, idSubject, 0)
		})
	}
}

// TestFleetChannelIsolation checks against a real NATS fleet that '.' in channel names
// does not let one channel read another: "a.b" does not get "a" or "a.b.c", and "a" does
// not get "a.b".
func TestFleetChannelIsolation(t *testing.T) {
	ns := psStartNATS(t, -1)
	nodes := psStartFleet(t, ns, fanout.RoutingDirected, 3)
	channels := []string{"a.b", "a", "a.b.c"} // client i on node i subscribes to channels[i]
	clients := make([]*psClient, len(channels))
	for i, ch := range channels {
		clients[i] = psDial(t, nodes[i], fmt.Sprintf("iso%d", i))
		clients[i].sub(t, ch)
		clients[i].sub(t, "mark")
	}
	for _, ch := range channels {
		psWaitSubs(t, ns, fanout.ChannelSubject(ch), 1)
	}
	for _, subj := range []string{"wsr.ch.a.b.c.d", "wsr.ch.a.x", "wsr.ch.b"} {
		psWaitSubs(t, ns, subj, 0)
	}
	// From every node (local delivery and NATS), publish to each channel and to a few
	// near-misses, then a marker: each client gets exactly its channel, then the marker.
	for _, origin := range nodes {
		for _, ch := range []string{"a", "a.b", "a.b.c", "a.b.c.d", "b", "a.x", "a.bc"} {
			psPublish(t, origin, ch, fmt.Sprintf(`%q`, ch))
		}
		psPublish(t, origin, "mark", `"mark"`)
		for i, c := range clients {
			c.expectMessage(t, channels[i], fmt.Sprintf(`%q`, channels[i]))
			c.expectMessage(t, "mark", `"mark"`)
		}
	}
}

// TestFleetOrdering publishes 10,000 messages across three nodes (one client pub stream
// per node) and checks that a subscriber on each node gets every message, in order per
// publisher, with no error frames.
func TestFleetOrdering(t *testing.T) {
	const total = 10000
	const publishers = 3
	ns := psStartNATS(t, -1)
	nodes := psStartFleet(t, ns, fanout.RoutingDirected, 3)
	subs := make([]*psClient, len(nodes))
	pubs := make([]*psClient, publishers)
	for i, n := range nodes {
		subs[i] = psDial(t, n, fmt.Sprintf("sub%d", i))
		subs[i].sub(t, "load")
		pubs[i] = psDial(t, n, fmt.Sprintf("pub%d", i))
	}
	psWaitSubs(t, ns, fanout.ChannelSubject("load"), len(nodes))

	counts := [publishers]int{}
	for i := range total {
		counts[i%publishers]++
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(nodes)+publishers)
	for p, c := range pubs {
		wg.Go(func() {
			for seq := range counts[p] {
				payload := fmt.Sprintf(`{"op":"pub","channel":"load","data":{"p":%d,"seq":%d}}`, p, seq)
				c.wmu.Lock()
				_ = c.conn.SetWriteDeadline(time.Now().Add(psWait))
				err := c.conn.WriteMessage(websocket.TextMessage, []byte(payload))
				c.wmu.Unlock()
				if err != nil {
					errs <- fmt.Errorf("publisher %d: write %d: %w", p, seq, err)
					return
				}
			}
		})
	}
	for i, c := range subs {
		wg.Go(func() {
			next := [publishers]int{}
			for got := 0; got < total; got++ {
				f, err := c.next(psWait)
				if err != nil {
					errs <- fmt.Errorf("subscriber on n%d: after %d messages (next per publisher %v): %w", i+1, got, next, err)
					return
				}
				var d struct{ P, Seq int }
				if f.Type != "message" || f.Channel != "load" || json.Unmarshal(f.Data, &d) != nil || d.P < 0 || d.P >= publishers {
					errs <- fmt.Errorf("subscriber on n%d: unexpected frame %s", i+1, f)
					return
				}
				if d.Seq != next[d.P] {
					errs <- fmt.Errorf("subscriber on n%d: publisher %d seq %d, want %d (lost or reordered)", i+1, d.P, d.Seq, next[d.P])
					return
				}
				next[d.P]++
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	t.Logf("%d messages to %d subscribers on %d nodes in %v", total, len(subs), len(nodes), time.Since(start))
	// Nothing extra: no duplicates on subscribers, no error frames (rate_limited) on
	// publishers. Markers on the same streams prove it.
	for i, c := range append(pubs, subs...) {
		ch := fmt.Sprintf("after-load-%d", i)
		c.sub(t, ch)
		psPublish(t, nodes[i%len(nodes)], ch, `"done"`)
		c.expectMessage(t, ch, `"done"`)
	}
}
