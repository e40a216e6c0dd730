package server_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/wsreactor/wsreactor/fanout"
)

// TestNATSRestart takes the NATS server away under a two-node fleet and brings it back on
// the same port: local delivery never stops, publishes that cannot reach NATS are refused
// with 503 broker_unavailable and counted in ws_messages_failed_total, and once NATS is
// back the nodes reconnect, restore their subscriptions, and cross-node delivery resumes.
func TestNATSRestart(t *testing.T) {
	ns := psStartNATS(t, -1)
	natsPort := ns.Addr().(*net.TCPAddr).Port
	nodes := psStartFleet(t, ns, fanout.RoutingDirected, 2)
	n1, n2 := nodes[0], nodes[1]

	c1 := psDial(t, n1, "c1")
	c1.sub(t, "room")
	psWaitSubs(t, ns, fanout.ChannelSubject("room"), 1)
	psPublish(t, n2, "room", `"before"`)
	c1.expectMessage(t, "room", `"before"`)

	failedBefore := psMetric(t, n1, "ws_messages_failed_total")
	ns.Shutdown()
	ns.WaitForShutdown()

	// Local delivery goes on. Publish on node 1 until it notices NATS is gone and answers
	// 503; every one of those messages, accepted or not, reaches the local subscriber.
	var sawUnavailable bool
	deadline := time.Now().Add(psWait)
	for i := 0; !sawUnavailable; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("node 1 still accepted publishes %v after NATS shut down, want 503", psWait)
		}
		data := fmt.Sprintf(`{"down":%d}`, i)
		status, _, body := psPost(t, n1, "/v1/publish", `{"channel":"room","data":`+data+`}`, nil)
		switch status {
		case http.StatusAccepted:
		case http.StatusServiceUnavailable:
			var e struct{ Error string }
			if err := json.Unmarshal(body, &e); err != nil || e.Error != "broker_unavailable" {
				t.Fatalf("503 body %q, want a JSON error broker_unavailable", body)
			}
			sawUnavailable = true
		default:
			t.Fatalf("publish while NATS is down: status %d %s, want 202 or 503", status, body)
		}
		c1.expectMessage(t, "room", data)
		if !sawUnavailable {
			time.Sleep(10 * time.Millisecond) // pace the probe; the wait is bounded by deadline
		}
	}
	// A few more, all refused by the broker and all delivered locally.
	for i := range 5 {
		data := fmt.Sprintf(`{"still-down":%d}`, i)
		status, _, body := psPost(t, n1, "/v1/publish", `{"channel":"room","data":`+data+`}`, nil)
		if status != http.StatusServiceUnavailable {
			t.Fatalf("publish %d while NATS is down: status %d %s, want 503", i, status, body)
		}
		c1.expectMessage(t, "room", data)
	}
	// A client pub while NATS is down is delivered locally and counted as failed too.
	c1.pub(t, "room", `"client pub while down"`)
	c1.expectMessage(t, "room", `"client pub while down"`)
	var failed float64
	eventually(t, psWait, func() bool {
		failed = psMetric(t, n1, "ws_messages_failed_total")
		return failed >= failedBefore+7
	}, func() string {
		return fmt.Sprintf("ws_messages_failed_total = %v, want at least %v (6 refused admin publishes and a client pub)", failed, failedBefore+7)
	})

	// NATS comes back on the same port.
	ns2 := psStartNATS(t, natsPort)
	// Node 1 restores its channel subscription; poll cross-node delivery from node 2.
	psWaitSubs(t, ns2, fanout.ChannelSubject("room"), 1)
	deadline = time.Now().Add(psWait)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("cross-node delivery did not resume within %v of NATS restarting", psWait)
		}
		data := strconv.Itoa(i)
		status, _, body := psPost(t, n2, "/v1/publish", `{"channel":"room","data":`+data+`}`, nil)
		if status != http.StatusAccepted && status != http.StatusServiceUnavailable {
			t.Fatalf("publish on node 2: status %d %s", status, body)
		}
		f, err := c1.next(200 * time.Millisecond)
		if err != nil {
			continue // not yet: node 2 may still be reconnecting
		}
		if f.Type != "message" || f.Channel != "room" {
			t.Fatalf("got %s, want a room message", f)
		}
		// Earlier probes may arrive late, never out of order.
		got, _ := strconv.Atoi(string(f.Data))
		if got > i {
			t.Fatalf("got probe %s after sending only up to %d", f.Data, i)
		}
		break
	}
	// Steady again: a publish on node 2 and a direct send from node 2 both arrive.
	psWaitSubs(t, ns2, fanout.IdentitySubject("c1"), 1)
	psPublish(t, n2, "room", `"after"`)
	for {
		f := c1.read(t)
		if f.Type == "message" && string(f.Data) == `"after"` {
			break
		}
		if _, err := strconv.Atoi(string(f.Data)); f.Type != "message" || err != nil {
			t.Fatalf("got %s, want late probes then \"after\"", f)
		}
	}
	psSend(t, n2, "c1", `"direct after"`)
	c1.expectDirect(t, "", `"direct after"`)
}
