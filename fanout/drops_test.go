package fanout

import (
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// gate blocks every Deliver until release is closed, then counts it.
type gate struct {
	release chan struct{}
	n       atomic.Int64
}

func (g *gate) Deliver(*Message) { <-g.release; g.n.Add(1) }

// TestNATSDropsAllCounted checks that every message the client library drops while this
// node falls behind is reported to OnDropped, not only those dropped before the one
// slow-consumer callback of an episode: delivered plus reported equals published.
func TestNATSDropsAllCounted(t *testing.T) {
	ns := startNATS(t)
	g := &gate{release: make(chan struct{})}
	var reported atomic.Int64
	first := make(chan struct{}, 1)
	rx, pub := subscribedPair(t, ns, g, func(n int) {
		reported.Add(int64(n))
		select {
		case first <- struct{}{}:
		default:
		}
	})
	rx.mu.Lock()
	sub := rx.subs[ChannelSubject("c")]
	rx.mu.Unlock()
	publish := func(n int) {
		for range n {
			if err := pub.Publish(ChannelSubject("c"), []byte(`1`)); err != nil {
				t.Fatal(err)
			}
		}
		if err := pub.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	waitDropped := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(waitFor); ; time.Sleep(5 * time.Millisecond) {
			if d, _ := sub.Dropped(); d >= want {
				return
			}
			if time.Now().After(deadline) {
				d, _ := sub.Dropped()
				t.Fatalf("the client dropped %d messages, want %d", d, want)
			}
		}
	}

	// One message blocks in Deliver, inboundQueue wait, 10 are dropped.
	total := 1 + inboundQueue + 10
	publish(total)
	waitDropped(10)
	select {
	case <-first:
	case <-time.After(waitFor):
		t.Fatal("no drop reported")
	}
	// The queue is still full: the same episode, which the client reports no more.
	publish(10)
	total += 10
	waitDropped(20)
	close(g.release)

	for deadline := time.Now().Add(waitFor); g.n.Load()+reported.Load() != int64(total); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("published %d: delivered %d, reported dropped %d; %d lost uncounted",
				total, g.n.Load(), reported.Load(), int64(total)-g.n.Load()-reported.Load())
		}
	}
	time.Sleep(1500 * time.Millisecond) // a watch round later, nothing is counted twice
	if got := g.n.Load() + reported.Load(); got != int64(total) {
		t.Fatalf("delivered + reported = %d, want %d", got, total)
	}
}

// TestNATSForeignMessageChecked checks what a node receives from NATS but did not publish
// through wsreactor (anyone with access to the subjects can): data that is not JSON in
// UTF-8 is dropped and counted, never handed on to become a text frame clients must fail.
func TestNATSForeignMessageChecked(t *testing.T) {
	ns := startNATS(t)
	var dropped atomic.Int64
	rec := &recorder{}
	_, pub := subscribedPair(t, ns, rec, func(n int) { dropped.Add(int64(n)) })
	for _, data := range []string{"\"\xff\"", "not json", `{"ok":1}`} {
		if err := pub.Publish(ChannelSubject("c"), []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	got := rec.waitN(t, 1)
	if len(got) != 1 || string(got[0].Data) != `{"ok":1}` {
		t.Fatalf("delivered %s, want only the valid message", describe(got))
	}
	if dropped.Load() != 2 {
		t.Errorf("dropped %d, want the 2 invalid messages counted", dropped.Load())
	}
}

// subscribedPair returns a broker "rx" delivering to d and reporting drops to onDropped,
// subscribed to channel "c" and synced, and a plain NATS connection to publish with;
// both are closed by the test's cleanup.
func subscribedPair(t *testing.T, ns *natsserver.Server, d Deliverer, onDropped func(int)) (*NATS, *nats.Conn) {
	t.Helper()
	rx, err := NewNATS(NATSConfig{URL: ns.ClientURL(), NodeID: "rx", Deliverer: d,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), OnDropped: onDropped})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rx.Close() })
	if err := rx.Subscribe("c"); err != nil {
		t.Fatal(err)
	}
	syncBroker(t, rx)
	pub, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	return rx, pub
}
