package server

import (
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"time"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/fanout"
	"github.com/wsreactor/wsreactor/loop"
)

// maxSubscriptions bounds the channels one connection may hold, so one client cannot grow
// the node's registries without bound.
const maxSubscriptions = 1024

// client is a pub/sub connection's state (loop.Conn.Value). Loop-owned.
type client struct {
	id       string
	grant    *grant              // the verified token; nil without auth
	channels map[string]struct{} // nil until the first sub
}

// loopState is the pub/sub registry of one event loop (loop.Loop.Value). Loop-owned.
type loopState struct {
	channels map[string]map[*loop.Conn]struct{}
	idents   map[string][]*loop.Conn
	// pending counts, per connection, replies waiting for the broker (welcome, subscribed):
	// while any is, later replies queue behind it, so a client reads them in request order.
	pending map[*loop.Conn]int
	buf     []byte // envelope scratch
}

func stateOf(l *loop.Loop) *loopState {
	st, _ := l.Value.(*loopState)
	if st == nil {
		st = &loopState{channels: map[string]map[*loop.Conn]struct{}{}, idents: map[string][]*loop.Conn{}, pending: map[*loop.Conn]int{}}
		l.Value = st
	}
	return st
}

// pubsubApp is the wire protocol of DESIGN.md on top of the loop. Its loop.App methods
// run on event loops; Deliver runs on broker goroutines and posts to loops.
type pubsubApp struct {
	s *Server
}

var errBadClientID = &codec.HandshakeError{Status: 400, Reason: "bad_request", Msg: "invalid client id"}

// Accept picks the connection's identity: X-Client-Id, else ?client_id=, else random.
func (a *pubsubApp) Accept(c *loop.Conn, req *codec.Request) (string, []string, *codec.HandshakeError) {
	if _, authed := c.Value.(*client); authed {
		return "", nil, nil // the gate set the identity from the token
	}
	id := string(req.ClientID)
	if id == "" {
		if raw, ok := req.QueryParam("client_id"); ok {
			v, err := url.QueryUnescape(string(raw))
			if err != nil {
				return "", nil, errBadClientID
			}
			id = v
		}
	}
	if id == "" {
		id = randomID()
	} else if !validIdentity(id) {
		return "", nil, errBadClientID
	}
	c.Value = &client{id: id}
	return "", nil, nil
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Open registers the identity on this loop and sends welcome.
func (a *pubsubApp) Open(c *loop.Conn) {
	cl := c.Value.(*client)
	l := c.Loop()
	st := stateOf(l)
	conns := st.idents[cl.id]
	st.idents[cl.id] = append(conns, c)
	if len(conns) == 0 {
		a.s.interest.add(interestIdentity, cl.id, l.Index())
	}
	// Welcome only once the identity's broker interest is in effect, so a direct send made
	// after the client sees welcome reaches it from any node. Until then c is held: no
	// message, direct or broadcast, may reach it before its welcome.
	c.Hold()
	a.afterBroker(st, c, func() {
		st.buf = appendWelcome(st.buf[:0], cl.id, a.s.opts.NodeID, a.s.opts.Heartbeat.Milliseconds())
		c.WriteMessage(codec.OpText, st.buf)
		c.Release()
	})
}

// Closed removes the connection from every registry of its loop.
func (a *pubsubApp) Closed(c *loop.Conn) {
	cl, _ := c.Value.(*client)
	if cl == nil {
		return
	}
	l := c.Loop()
	st := stateOf(l)
	for ch := range cl.channels {
		a.unsubscribe(st, l, c, ch)
	}
	conns := st.idents[cl.id]
	for i, x := range conns {
		if x == c {
			conns[i] = conns[len(conns)-1]
			conns[len(conns)-1] = nil
			conns = conns[:len(conns)-1]
			break
		}
	}
	if len(conns) == 0 {
		delete(st.idents, cl.id)
		a.s.interest.remove(interestIdentity, cl.id, l.Index())
	} else {
		st.idents[cl.id] = conns
	}
}

// Message handles one client message.
func (a *pubsubApp) Message(c *loop.Conn, op codec.OpCode, payload []byte) {
	if op != codec.OpText {
		c.Close(codec.CloseUnsupportedData, "the protocol is JSON text frames")
		return
	}
	cl := c.Value.(*client)
	l := c.Loop()
	st := stateOf(l)
	msg, perr := parseOp(payload)
	if perr != nil {
		a.replyError(st, c, perr.code, perr.msg)
		return
	}
	switch msg.Op {
	case "sub":
		if _, ok := cl.channels[msg.Channel]; ok {
			// Already subscribed, perhaps not yet confirmed: answer behind the pending
			// confirmation, never before the subscription is live.
			a.reply(st, c, appendSubscribed, msg.Channel)
			return
		}
		if !cl.grant.allows(msg.Channel) {
			a.replyError(st, c, errForbidden, "the token does not allow this channel")
			return
		}
		if len(cl.channels) >= maxSubscriptions {
			a.replyError(st, c, errForbidden, "subscription limit reached")
			return
		}
		if cl.channels == nil {
			cl.channels = map[string]struct{}{}
		}
		cl.channels[msg.Channel] = struct{}{}
		subs := st.channels[msg.Channel]
		if subs == nil {
			subs = map[*loop.Conn]struct{}{}
			st.channels[msg.Channel] = subs
			a.s.interest.add(interestChannel, msg.Channel, l.Index())
		}
		subs[c] = struct{}{}
		// Confirm only once the broker has the subscription, so every message published
		// after "subscribed" arrives.
		ch := msg.Channel
		a.afterBroker(st, c, func() {
			st.buf = appendSubscribed(st.buf[:0], ch)
			c.WriteMessage(codec.OpText, st.buf)
		})
	case "unsub":
		if _, ok := cl.channels[msg.Channel]; ok {
			delete(cl.channels, msg.Channel)
			a.unsubscribe(st, l, c, msg.Channel)
		}
		a.reply(st, c, appendUnsubscribed, msg.Channel)
	case "pub":
		if !cl.grant.allows(msg.Channel) {
			a.replyError(st, c, errForbidden, "the token does not allow this channel")
			return
		}
		if lim := a.s.chanLimit; lim != nil && !lim.allow(msg.Channel, time.Now()) {
			a.s.metrics.channelLimited.Inc()
			a.replyError(st, c, errRateLimited, "channel publish rate exceeded")
			return
		}
		a.publish(st, c, &fanout.Message{Kind: fanout.KindChannel, Channel: msg.Channel, Data: msg.Data, Published: time.Now()})
	case "send":
		a.publish(st, c, &fanout.Message{Kind: fanout.KindDirect, To: msg.To, From: cl.id, Data: msg.Data, Published: time.Now()})
	}
}

// publish queues a client's pub or send for the broker, answering a refusal (a full
// queue) with an error frame in request order. Runs on c's loop.
func (a *pubsubApp) publish(st *loopState, c *loop.Conn, m *fanout.Message) {
	if !a.s.enqueuePublish(m) {
		a.replyError(st, c, errRateLimited, "server busy: publish refused, try again")
	}
}

// unsubscribe drops c from channel ch's loop registry (the caller updates cl.channels).
func (a *pubsubApp) unsubscribe(st *loopState, l *loop.Loop, c *loop.Conn, ch string) {
	subs := st.channels[ch]
	delete(subs, c)
	if len(subs) == 0 {
		delete(st.channels, ch)
		a.s.interest.remove(interestChannel, ch, l.Index())
	}
}

// maxPendingReplies bounds the replies one socket may have waiting for the broker. Each
// is a closure in the interest queue; a client that keeps sending subs, unsubs or bad
// messages while the broker is slow to confirm (a NATS flush takes up to 2 s) must not
// grow that queue without bound. Past it the socket is closed with 1008. It is far above
// maxSubscriptions, so a client subscribing to all it may in one burst is never refused.
const maxPendingReplies = 4 * maxSubscriptions

// afterBroker runs fn on c's loop, if c is still open, once every interest change queued
// before it is in effect at the broker; until then c's later replies queue behind it.
// Runs on c's loop.
func (a *pubsubApp) afterBroker(st *loopState, c *loop.Conn, fn func()) {
	if st.pending[c] >= maxPendingReplies {
		c.Close(codec.ClosePolicy, "too many requests awaiting the broker")
		return
	}
	st.pending[c]++
	a.s.interest.ack(c.Loop(), func() {
		// Closed leaves the entry: every queued ack still runs, and the last removes it.
		if n := st.pending[c]; n <= 1 {
			delete(st.pending, c)
		} else {
			st.pending[c] = n - 1
		}
		if c.Open() {
			fn()
		}
	})
}

// reply writes encode(ch) to c at once, or behind the replies of c's still waiting for the
// broker, so a sub then an unsub read "subscribed" then "unsubscribed", as sent. Runs on
// c's loop.
func (a *pubsubApp) reply(st *loopState, c *loop.Conn, encode func(dst []byte, ch string) []byte, ch string) {
	if st.pending[c] > 0 {
		a.afterBroker(st, c, func() {
			st.buf = encode(st.buf[:0], ch)
			c.WriteMessage(codec.OpText, st.buf)
		})
		return
	}
	st.buf = encode(st.buf[:0], ch)
	c.WriteMessage(codec.OpText, st.buf)
}

// replyError answers a bad client message with an error frame, in request order like
// reply. Runs on c's loop.
func (a *pubsubApp) replyError(st *loopState, c *loop.Conn, code, msg string) {
	if st.pending[c] > 0 {
		a.afterBroker(st, c, func() {
			st.buf = appendError(st.buf[:0], code, msg)
			c.WriteMessage(codec.OpText, st.buf)
		})
		return
	}
	st.buf = appendError(st.buf[:0], code, msg)
	c.WriteMessage(codec.OpText, st.buf)
}
