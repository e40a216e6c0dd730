package server

import (
	"time"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/fanout"
	"github.com/wsreactor/wsreactor/loop"
)

// Deliver implements fanout.Deliverer: it encodes m's frame once and hands it to each
// interested event loop once; each loop writes the same bytes to its own sockets, except
// those still held for their welcome (a message published before a client's welcome is
// not one the client can expect; it counts as failed). Called
// from broker goroutines (and from publishers, for local delivery); never blocks.
func (s *Server) Deliver(m *fanout.Message) {
	var (
		env  []byte
		mask loopMask
		// each writes frame to a loop's recipients: sent took it, missed did not (closing,
		// or closed as slow consumers by the write); held sockets are neither.
		each func(st *loopState, l *loop.Loop, frame []byte) (sent, missed int)
	)
	switch m.Kind {
	case fanout.KindChannel:
		mask = s.interest.mask(interestChannel, m.Channel)
		if mask == 0 {
			return
		}
		env = appendMessage(nil, m.Channel, m.Data, m.Traceparent)
		ch := m.Channel
		each = func(st *loopState, _ *loop.Loop, frame []byte) (sent, missed int) {
			// Deleting from a map during range is safe: a write that fails closes that
			// socket, and Closed removes it from this very map.
			for c := range st.channels[ch] {
				sent, missed = tally(c, frame, sent, missed)
			}
			return sent, missed
		}
	case fanout.KindDirect:
		mask = s.interest.mask(interestIdentity, m.To)
		if mask == 0 {
			return
		}
		env = appendDirect(nil, m.From, m.Data, m.Traceparent)
		to := m.To
		each = func(st *loopState, _ *loop.Loop, frame []byte) (sent, missed int) {
			// Backwards: Closed swap-removes from this slice when a write fails.
			for i := len(st.idents[to]) - 1; i >= 0; i-- {
				if conns := st.idents[to]; i < len(conns) {
					sent, missed = tally(conns[i], frame, sent, missed)
				}
			}
			return sent, missed
		}
	case fanout.KindBroadcast:
		mask = ^loopMask(0)
		if s.opts.App == AppEcho {
			env = echoPayload(m.Data)
		} else {
			env = appendBroadcast(nil, m.Data, m.Traceparent)
		}
		each = func(_ *loopState, l *loop.Loop, frame []byte) (int, int) { return l.Broadcast(frame) }
	default:
		return
	}
	frame := codec.AppendFrame(make([]byte, 0, codec.FrameSize(len(env))), codec.OpText, true, env)
	published := m.Published
	countsItself := m.Kind == fanout.KindBroadcast // loop.Broadcast counts what it sends
	for _, l := range s.handler.Loops() {
		if mask&loopBit(l.Index()) == 0 {
			continue
		}
		err := l.PostFrame(func() {
			n, missed := each(stateOf(l), l, frame)
			if missed > 0 {
				s.metrics.failed.Add(missed) // addressed to a socket that could not take it
			}
			if n == 0 {
				return // no local write, so no lag to sample
			}
			if !countsItself {
				s.metrics.sent.Add(n)
			}
			if !published.IsZero() {
				s.metrics.fanoutLag.Update(time.Since(published).Seconds())
			}
		}, len(frame))
		if err != nil {
			s.metrics.failed.Inc()
		}
	}
}

// echoPayload is what -app echo broadcasts: a JSON string's decoded contents, any other
// JSON value exactly as it was sent.
func echoPayload(data []byte) []byte {
	if len(data) > 0 && data[0] == '"' {
		if s, ok := decodeJSONString(data); ok {
			return []byte(s)
		}
	}
	return data
}

// tally writes frame to c and counts the outcome. A socket held for its welcome refuses
// it: a message published before a client's welcome is not one it can expect, but it was
// addressed there, so it counts as failed rather than vanishing.
func tally(c *loop.Conn, frame []byte, sent, missed int) (int, int) {
	if c.WriteFrame(frame) {
		return sent + 1, missed
	}
	return sent, missed + 1
}
