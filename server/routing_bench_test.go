package server_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// BenchmarkDirectRouting compares the two direct-message routings on a three-node fleet
// sharing one in-process NATS server: identity "bob" is connected to node 2, the sender
// to node 1, and node 3 holds other clients. Each op is one client "send" to bob from
// node 1, with at most 512 in flight. It reports the NATS messages delivered to nodes per
// send (from the NATS server's out_msgs) and the direct sends per second.
//
//	go test -run=^$ -bench=DirectRouting -benchtime=20000x ./server/
func BenchmarkDirectRouting(b *testing.B) {
	for _, rt := range psRoutings {
		b.Run("routing="+rt.name, func(b *testing.B) {
			ns := psStartNATS(b, -1)
			nodes := psStartFleet(b, ns, rt.routing, 3)
			bob := psDial(b, nodes[1], "bob")
			for i := range 10 {
				psDial(b, nodes[2], fmt.Sprintf("other-%d", i))
			}
			sender := psDial(b, nodes[0], "alice")
			// Wait until bob's identity interest is live on NATS under directed routing.
			if rt.name == "directed" {
				psWaitSubs(b, ns, "wsr.id.Ym9i", 1)
			}
			var got atomic.Int64
			go func() {
				for {
					select {
					case f := <-bob.frames:
						if f.Type == "direct" {
							got.Add(1)
						}
					case <-bob.done:
						return
					}
				}
			}()
			varz := func() int64 {
				v, err := ns.Varz(nil)
				if err != nil {
					b.Fatal(err)
				}
				return v.OutMsgs
			}
			before := varz()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				for int64(i)-got.Load() > 512 {
					time.Sleep(50 * time.Microsecond)
				}
				msg := fmt.Sprintf(`{"op":"send","to":"bob","data":%d}`, i)
				if err := sender.conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
					b.Fatal(err)
				}
			}
			deadline := time.Now().Add(30 * time.Second)
			for got.Load() < int64(b.N) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			if n := got.Load(); n != int64(b.N) {
				b.Fatalf("bob received %d of %d direct sends", n, b.N)
			}
			out := varz() - before
			b.ReportMetric(float64(out)/float64(b.N), "broker_msgs/send")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "sends/s")
		})
	}
}
