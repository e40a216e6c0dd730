package loop

import (
	"bytes"
	"encoding/binary"
	"errors"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsreactor/wsreactor/codec"
)

// handshake parses the upgrade request once its head is complete, answers it, and decodes
// any frames pipelined behind it. Runs on c's loop.
func (h *Handler) handshake(c *Conn) gnet.Action {
	if h.draining.Load() {
		// Accepted before the drain, upgrading after it started: no new sessions on a
		// draining node, as for connections arriving now (OnOpen).
		return gnet.Close
	}
	gc, sh := c.gc(), c.sh
	buf, _ := gc.Peek(-1)
	// Search only the bytes not searched before (less the 3 that may start a CRLFCRLF), so
	// a head trickled one byte at a time costs linear, not quadratic, work. Once
	// MaxHeaderBytes have arrived with no CRLFCRLF the head can no longer fit, so
	// ParseRequest answers 431 now instead of the handshake timeout ending it later.
	from := max(c.scanned()-3, 0)
	if bytes.Index(buf[from:], crlfcrlf) < 0 && len(buf) < h.cfg.MaxHeaderBytes {
		c.setScanned(len(buf))
		return gnet.None
	}
	sh.req.Reset()
	n, err := codec.ParseRequest(buf, h.cfg.MaxHeaderBytes, &sh.req)
	if errors.Is(err, codec.ErrIncomplete) {
		c.setScanned(len(buf))
		return gnet.None
	}
	if err != nil {
		// herr is declared here, not above: errors.As takes its address, which would move
		// it to the heap on every handshake, successful ones included.
		var herr *codec.HandshakeError
		if !errors.As(err, &herr) {
			herr = &codec.HandshakeError{Status: 400, Reason: "bad_request", Msg: "malformed request"}
		}
		h.reject(c, herr)
		return gnet.None
	}
	protocol, extra, herr := h.cfg.App.Accept(c, &sh.req)
	if herr != nil {
		h.reject(c, herr, extra...)
		return gnet.None
	}
	// Counted before the 101 goes out, so a client that reads it is already in the count.
	if !h.reserve() {
		h.reject(c, ErrCapacity, RetryAfter...)
		return gnet.None
	}
	sh.buf = codec.AppendAccept(sh.buf[:0], &sh.req, protocol)
	_, _ = gc.Discard(n)
	if _, err := gc.Write(sh.buf); err != nil || c.state == stateClosed {
		h.active.Add(-1) // never upgraded, so OnClose leaves the count alone
		return gnet.None
	}
	c.state = stateOpen
	c.setScanned(0) // the word is rateTAT from here on
	h.cfg.Observer.Opened()
	// The connect time sets the ping phase, so a loop's pings spread as its connects did.
	// Setting nextPing (never zero: the clock and Heartbeat are positive) marks c upgraded.
	c.nextPing = sh.clock(sh.now) + int64(h.cfg.Heartbeat)
	sh.arm(c)
	h.cfg.App.Open(c)
	if c.state != stateOpen || gc.InboundBuffered() == 0 {
		return gnet.None
	}
	return h.frames(c)
}

// reject answers a refused upgrade with its HTTP status and lingers until the peer closes.
func (h *Handler) reject(c *Conn, e *codec.HandshakeError, extra ...string) {
	h.cfg.Observer.UpgradeFailed(e.Reason)
	_, _ = c.gc().Discard(-1)
	c.sh.buf = codec.AppendReject(c.sh.buf[:0], e, extra...)
	_, _ = c.gc().Write(c.sh.buf)
	c.linger()
}

// frames decodes every complete frame in the inbound buffer and consumes them. Runs on
// c's loop, in stateOpen or stateClosing.
func (h *Handler) frames(c *Conn) gnet.Action {
	gc := c.gc()
	if c.awaitingPayload() {
		return gnet.None
	}
	buf, _ := gc.Peek(-1)
	off := 0
	for off < len(buf) {
		f, n, err := c.dec.Decode(buf[off:], h.cfg.MaxMessageBytes)
		if err != nil {
			if errors.Is(err, codec.ErrIncomplete) {
				break
			}
			var perr *codec.ProtocolError
			code := codec.CloseProtocolError
			if errors.As(err, &perr) {
				code = perr.Code
			}
			_, _ = gc.Discard(-1)
			if c.state == stateOpen {
				c.fail(code)
			} else {
				c.linger()
			}
			return gnet.None
		}
		off += n
		if act, done := h.frame(c, &f); done {
			_, _ = gc.Discard(off)
			return act
		}
	}
	// gnet's Discard(n) with n <= 0 discards everything buffered, so with no complete
	// frame consumed it must not be called: the partial frame has to stay for the next read.
	if off > 0 {
		_, _ = gc.Discard(off)
	}
	return gnet.None
}

// awaitingPayload reports whether the frame at the front of c's inbound buffer has a valid
// header but has not fully arrived, looking at the header only. gnet's Peek(-1) copies
// every buffered byte into one slice whenever bytes from an earlier read are still
// buffered, so peeking a large frame whole on each read while it trickles in would cost
// time quadratic in its size: a 1 MiB message sent in 1 KiB segments would copy about
// 512 MiB. Runs on c's loop.
func (c *Conn) awaitingPayload() bool {
	buffered := c.gc().InboundBuffered()
	if buffered < codec.MaxHeaderSize {
		return false // a short buffer is cheap to peek whole
	}
	hdr, err := c.gc().Peek(codec.MaxHeaderSize)
	if err != nil {
		return false
	}
	size, n := int64(2), int64(hdr[1]&0x7F)
	switch n {
	case 126:
		size, n = 4, int64(binary.BigEndian.Uint16(hdr[2:]))
	case 127:
		size, n = 10, int64(binary.BigEndian.Uint64(hdr[2:])) // negative when the top bit is set
	}
	if hdr[1]&0x80 != 0 {
		size += 4 // mask key
	}
	if n < 0 || int64(buffered) >= size+n {
		return false // a bad length, or the whole frame is here: Decode it
	}
	// The frame is incomplete, so Decode reads only its header and changes nothing; it
	// reports a header violation (or an oversized length) now, as it would with all bytes.
	_, _, err = c.dec.Decode(hdr, c.sh.h.cfg.MaxMessageBytes)
	return errors.Is(err, codec.ErrIncomplete)
}

// frame handles one decoded frame. done reports that the connection is finished with
// (closed, or to be closed with the returned action).
func (h *Handler) frame(c *Conn, f *codec.Frame) (act gnet.Action, done bool) {
	switch f.Op {
	case codec.OpPing:
		// §5.5.2: a ping gets its pong until the peer's close arrives, so also after the
		// server sent its own close (§5.5.1 stops only data frames then).
		if h.allow(c) {
			c.sh.buf = codec.AppendPong(c.sh.buf[:0], f.Payload)
			_, _ = c.gc().Write(c.sh.buf)
			c.afterWrite(len(c.sh.buf))
		}
	case codec.OpPong:
		// Pongs answer pings in order, so this one answers the oldest unanswered ping,
		// sent n heartbeats before nextPing: exact for n = 1; for more, each later ping
		// went out up to a tick after it was due, so the sample may be short by that.
		if n := c.unanswered(); n > 0 {
			sent := c.nextPing - int64(n)*int64(h.cfg.Heartbeat)
			h.cfg.Observer.HeartbeatRTT(time.Duration(c.sh.clock(c.sh.now) - sent))
			c.setUnanswered(0)
		}
	case codec.OpClose:
		if c.state == stateOpen {
			// Peer-initiated: echo its code (RFC 6455 §5.5.1), then close the TCP connection.
			code, _, _ := codec.ParseClose(f.Payload)
			c.closeCode = code
			c.flags |= flagPeerCode
			echo := code
			if code == codec.CloseNoStatus {
				echo = 0
			}
			c.sh.buf = codec.AppendClose(c.sh.buf[:0], echo, "")
			_, _ = c.gc().Write(c.sh.buf)
		}
		// Either way the close handshake is complete; the server closes TCP first (§7.1.1).
		return gnet.Close, true
	default: // data
		if c.state != stateOpen {
			return gnet.None, false
		}
		if f.Fin && !h.allow(c) {
			return gnet.None, c.state == stateClosed
		}
		if frag, inFlight := c.sh.frags[c]; !f.Fin || inFlight {
			// Reassembly lives in the shard, not the Conn: fragmented messages are rare,
			// and a slice header in every connection would cost 24 bytes each.
			frag = append(frag, f.Payload...)
			if !f.Fin {
				c.sh.frags[c] = frag
				return gnet.None, false
			}
			msg := frag
			delete(c.sh.frags, c)
			h.deliver(c, f.Message, msg)
		} else {
			h.deliver(c, f.Message, f.Payload)
		}
	}
	return gnet.None, c.state == stateClosed
}

func (h *Handler) deliver(c *Conn, op codec.OpCode, payload []byte) {
	h.cfg.Observer.Received(1)
	h.cfg.App.Message(c, op, payload)
}

// allow spends one message of c's rate budget (a token bucket refilled at ClientRate per
// second up to twice that), closing c with 4029 when it is empty. Runs on c's loop.
func (h *Handler) allow(c *Conn) bool {
	rate := h.cfg.ClientRate
	if rate <= 0 {
		return true
	}
	tat, ok := gcra(c.rateTAT, c.sh.clock(c.sh.now), rate)
	if !ok {
		c.Close(codec.CloseRateLimited, "message rate limit")
		return false
	}
	c.rateTAT = tat
	return true
}

// gcra is the rate limit's arithmetic: the generic cell rate algorithm, a token bucket kept
// as one time. Each message moves the theoretical arrival time (TAT) on by one interval
// (1/rate), and a message at now is allowed while the TAT runs at most two seconds' worth
// of messages (the 2x burst) less one interval ahead of now. The burst is at least one
// message, so a rate under 0.5 a second still lets one message through per interval
// instead of refusing the first. It returns the TAT after an allowed message; a zero TAT
// is a full bucket. Times are nanoseconds.
func gcra(tat, now int64, rate float64) (int64, bool) {
	interval := int64(min(1e9/rate, 1e18)) // clamped: a rate near zero would overflow
	tat = max(tat, now)
	if tat-now > max(2e9-interval, 0) {
		return 0, false
	}
	return tat + interval, true
}
