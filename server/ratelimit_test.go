package server_test

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// TestClientRate checks -client-rate 20 (burst 40): a client over it is closed with 4029
// after about a burst's worth of answered messages; a client within it, including one
// that spends its whole burst and then keeps to less than the refill rate, stays open.
func TestClientRate(t *testing.T) {
	const rate, burst = 20, 40
	hs := servertest.Start(t, server.Options{App: server.AppPubSub, ClientRate: rate})
	unsub := []byte(`{"op":"unsub","channel":"x"}`)
	tests := []struct {
		name      string
		op        codec.OpCode
		initial   int           // messages written at once, as fast as the socket takes them
		paced     int           // then this many, one per interval
		interval  time.Duration //
		wantClose bool          // closed with 4029
	}{
		{name: "200 messages at once", op: codec.OpText, initial: 200, wantClose: true},
		// Pings are inbound messages too: answering them costs the server as much.
		{name: "200 pings at once", op: codec.OpPing, initial: 200, wantClose: true},
		{name: "10 per second for 2 s", op: codec.OpText, paced: 20, interval: 100 * time.Millisecond},
		// Without the refill the first paced message would find the bucket empty.
		{name: "whole burst then 15 per second for 2 s", op: codec.OpText, initial: burst, paced: 30, interval: time.Second / 15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := hs.Metric(t, hdCloseSeries(codec.CloseRateLimited))
			c := hdMustUpgrade(t, hs.Addr, "/")
			if m, err := c.readMsg(10 * time.Second); err != nil || m.Type != "welcome" {
				t.Fatalf("first message = %+v, %v; want welcome", m, err)
			}
			var payload []byte
			if tt.op == codec.OpText {
				payload = unsub
			}
			start := time.Now()
			var batch []byte
			for range tt.initial {
				batch = append(batch, hdClientFrame(tt.op, payload)...)
			}
			if len(batch) > 0 {
				_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write(batch); err != nil {
					t.Fatalf("writing %d messages: %v", tt.initial, err)
				}
			}

			if tt.wantClose {
				answers, closeFrame, err := c.answersUntilClose(15 * time.Second)
				elapsed := time.Since(start)
				if err != nil {
					t.Fatalf("after %d answers: %v", answers, err)
				}
				if closeFrame == nil || closeFrame.code != codec.CloseRateLimited {
					t.Fatalf("close frame = %+v, want 4029", closeFrame)
				}
				// The bucket starts full (burst) and refills at rate while the flood is read.
				if maxAnswers := burst + int(math.Ceil(rate*elapsed.Seconds())) + 1; answers < burst || answers > maxAnswers {
					t.Errorf("%d messages answered before the close, want %d..%d", answers, burst, maxAnswers)
				}
				_ = c.sendClose(codec.CloseRateLimited)
				if _, err := c.expectEnd(10 * time.Second); err != nil {
					t.Errorf("after the close reply: %v", err)
				}
				hs.WaitMetricFunc(t, hdCloseSeries(codec.CloseRateLimited), func(v float64) bool { return v == before+1 })
				return
			}

			for i := range tt.initial {
				if err := c.expectAnswer(tt.op); err != nil {
					t.Fatalf("answer %d to the initial burst: %v", i, err)
				}
			}
			tick := time.NewTicker(tt.interval)
			defer tick.Stop()
			for i := range tt.paced {
				<-tick.C
				if err := c.send(tt.op, payload); err != nil {
					t.Fatalf("paced message %d: %v", i, err)
				}
				if err := c.expectAnswer(tt.op); err != nil {
					t.Fatalf("answer to paced message %d (%v in): %v", i, time.Since(start), err)
				}
			}
			if got := hs.Metric(t, hdCloseSeries(codec.CloseRateLimited)); got != before {
				t.Errorf("%s = %v, want %v", hdCloseSeries(codec.CloseRateLimited), got, before)
			}
			_ = c.sendClose(codec.CloseNormal)
		})
	}
}

// hdClientFrame encodes one masked client frame.
func hdClientFrame(op codec.OpCode, payload []byte) []byte {
	return codec.AppendClientFrame(nil, op, true, payload, [4]byte{1, 2, 3, 4})
}

// expectAnswer reads the server's answer to one unsub (its "unsubscribed") or one ping
// (its pong).
func (c *hdConn) expectAnswer(op codec.OpCode) error {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	for {
		f, err := c.readFrame()
		if err != nil {
			return err
		}
		switch {
		case f.op == codec.OpClose:
			return hdParseClose(f.payload)
		case f.op == codec.OpPing && op != codec.OpPing:
			continue // a heartbeat
		case op == codec.OpPing && f.op == codec.OpPong:
			return nil
		case op == codec.OpText && f.op == codec.OpText && bytes.Contains(f.payload, []byte(`"unsubscribed"`)):
			return nil
		default:
			return errors.New("unexpected frame " + strconv.Itoa(int(f.op)) + ": " + string(f.payload))
		}
	}
}

// answersUntilClose counts the data messages and pongs that arrive before the close
// frame, which it returns.
func (c *hdConn) answersUntilClose(d time.Duration) (int, *hdCloseError, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	n := 0
	for {
		f, err := c.readFrame()
		if err != nil {
			return n, nil, err
		}
		switch f.op {
		case codec.OpClose:
			return n, hdParseClose(f.payload), nil
		case codec.OpText, codec.OpPong:
			n++
		}
	}
}

// TestChannelRate checks -channel-rate 5 (burst 10): two clients publishing 25 times each
// as fast as they can on one channel get about one burst through between them (the
// limit is per channel and node, not per client) and error frames "rate_limited" for the
// rest, counted in ws_channel_rate_limited_total; both stay open, and another channel
// has its own budget.
func TestChannelRate(t *testing.T) {
	const rate, burst, perClient = 5, 10, 25
	hs := servertest.Start(t, server.Options{App: server.AppPubSub, ChannelRate: rate})
	clients := []struct {
		name string
		conn *hdConn
		// accepted and limited count the outcomes of this client's own pubs.
		accepted, limited int
	}{{name: "a"}, {name: "b"}}
	for i := range clients {
		cl := &clients[i]
		cl.conn = hdMustUpgrade(t, hs.Addr, "/")
		if m, err := cl.conn.readMsg(10 * time.Second); err != nil || m.Type != "welcome" {
			t.Fatalf("client %s: first message = %+v, %v; want welcome", cl.name, m, err)
		}
		for _, ch := range []string{"hot", "cold"} {
			if err := cl.conn.subscribe(ch); err != nil {
				t.Fatalf("client %s: sub %s: %v", cl.name, ch, err)
			}
		}
	}

	start := time.Now()
	for i := range clients {
		cl := &clients[i]
		var batch []byte
		for j := range perClient {
			pub := `{"op":"pub","channel":"hot","data":{"from":"` + cl.name + `","i":` + strconv.Itoa(j) + `}}`
			batch = append(batch, hdClientFrame(codec.OpText, []byte(pub))...)
		}
		_ = cl.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := cl.conn.Write(batch); err != nil {
			t.Fatalf("client %s: writing %d pubs: %v", cl.name, perClient, err)
		}
	}
	// Each pub is answered to its sender: by the message coming back (every client is
	// subscribed) or by an error. Messages of the other client are skipped.
	for i := range clients {
		cl := &clients[i]
		own := []byte(`"from":"` + cl.name + `"`)
		for cl.accepted+cl.limited < perClient {
			m, err := cl.conn.readMsg(15 * time.Second)
			if err != nil {
				t.Fatalf("client %s, after %d accepted and %d limited: %v", cl.name, cl.accepted, cl.limited, err)
			}
			switch {
			case m.Type == "message" && m.Channel == "hot":
				if bytes.Contains(m.Data, own) {
					cl.accepted++
				}
			case m.Type == "error" && m.Code == "rate_limited":
				cl.limited++
			default:
				t.Fatalf("client %s: unexpected answer %+v", cl.name, m)
			}
		}
	}
	elapsed := time.Since(start)
	accepted := clients[0].accepted + clients[1].accepted
	limited := clients[0].limited + clients[1].limited
	t.Logf("accepted a=%d b=%d, limited a=%d b=%d, in %v", clients[0].accepted, clients[1].accepted,
		clients[0].limited, clients[1].limited, elapsed)
	// One bucket for the channel: a burst plus what refilled while the pubs were handled.
	if maxAccepted := burst + int(math.Ceil(rate*elapsed.Seconds())) + 1; accepted < burst || accepted > maxAccepted {
		t.Errorf("%d of %d pubs accepted, want %d..%d", accepted, 2*perClient, burst, maxAccepted)
	}
	if limited == 0 {
		t.Errorf("no pub was refused with rate_limited")
	}
	if got := hs.Metric(t, "ws_channel_rate_limited_total"); got != float64(limited) {
		t.Errorf("ws_channel_rate_limited_total = %v, want %d", got, limited)
	}

	// Both clients are still open and served; "cold" has a budget of its own.
	steps := []struct {
		name     string
		client   int
		send     string
		wantType string
		wantChan string
	}{
		{name: "pub on another channel", client: 0, send: `{"op":"pub","channel":"cold","data":1}`, wantType: "message", wantChan: "cold"},
		{name: "sub after being limited", client: 1, send: `{"op":"sub","channel":"other"}`, wantType: "subscribed", wantChan: "other"},
	}
	for _, st := range steps {
		c := clients[st.client].conn
		if err := c.sendJSON(st.send); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		// Skip messages the other client's pubs brought.
		for {
			m, err := c.readMsg(10 * time.Second)
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			if m.Type == "message" && m.Channel != st.wantChan {
				continue
			}
			if m.Type != st.wantType || m.Channel != st.wantChan {
				t.Errorf("%s: got %+v, want type %q on %q", st.name, m, st.wantType, st.wantChan)
			}
			break
		}
	}
	if got := hs.Metric(t, "ws_connections_active"); got != 2 {
		t.Errorf("ws_connections_active = %v, want 2", got)
	}
	if got := hs.Metric(t, "ws_connections_closed_total"); got != 0 {
		t.Errorf("ws_connections_closed_total = %v, want 0", got)
	}
}

// TestChannelRateUnderHalf checks a -channel-rate under 0.5 a second: its burst is one
// publish, not less, so the first pub goes through and the next, at once, is refused.
func TestChannelRateUnderHalf(t *testing.T) {
	hs := servertest.Start(t, server.Options{App: server.AppPubSub, ChannelRate: 0.25})
	c := hdMustUpgrade(t, hs.Addr, "/")
	if m, err := c.readMsg(10 * time.Second); err != nil || m.Type != "welcome" {
		t.Fatalf("first message = %+v, %v; want welcome", m, err)
	}
	if err := c.subscribe("slow"); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"message", "error"} {
		if err := c.sendJSON(`{"op":"pub","channel":"slow","data":1}`); err != nil {
			t.Fatal(err)
		}
		if m, err := c.readMsg(10 * time.Second); err != nil || m.Type != want {
			t.Fatalf("pub %d: answer %+v, %v; want %s", i+1, m, err, want)
		}
	}
}
