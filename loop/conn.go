package loop

import (
	"math"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/timerwheel"
)

// state is where a connection is in its life.
type state uint8

const (
	stateHandshake state = iota // waiting for a complete upgrade request
	stateOpen                   // upgraded; frames flow
	stateClosing                // server sent close; waiting for the peer's close frame
	stateLinger                 // refused or failed: output shut, input discarded until EOF or timeout
	stateClosed                 // gone from the shard; OnClose has run
)

// smallWrite is the payload size up to which a message is framed by copying it into the
// loop's scratch buffer and written with one write(2); larger payloads go out with writev
// so a 1 MiB echo is not copied twice.
const smallWrite = 4 << 10

// Conn is one client connection. It lives in its event loop's shard and every method must
// run on that loop (in an App callback or in work posted to the loop). It is small on
// purpose: an idle Conn holds no buffers.
type Conn struct {
	sh *shard
	// timer is c's one timer. Its value is c's gnet connection, which c keeps nowhere else
	// (read it with gc); the timer's callback reaches c through gnet's context. That saves
	// every socket 8 bytes over a *Conn value plus a gnet.Conn field.
	timer timerwheel.Timer[gnet.Conn]
	dec   codec.Decoder

	// Times are loop clock readings (ns since the shard's epoch) unless noted. The fields
	// are chosen and ordered to keep Conn at 112 bytes, an allocation size class
	// (loop/size_test.go): every idle socket pays for each one.
	lastRead int64 // last bytes read
	nextPing int64 // the next ping; set at the upgrade, so non-zero means upgraded
	// rateTAT is the rate limit's theoretical arrival time of the next message (GCRA)
	// once c is open. During the handshake, before any message, it holds instead how many
	// head bytes were already searched for the end of the head (see scanned).
	rateTAT int64
	queued  int32 // outbound bytes gnet held after the last look (write or tick)
	idx     int32 // position in shard.conns
	// expires is when the credentials expire, in Unix seconds (rounded up); 0 for never.
	// Once c is closing it holds instead the outbound bytes gnet had for c at the last
	// look (see shard.onTimer), as expiry no longer matters.
	expires uint32

	state     state           //
	flags     connFlags       // congested, unanswered pings
	closeCode codec.CloseCode // code the connection ends with (sent or received)

	// Value is the App's per-connection state.
	Value any
}

// gc returns c's gnet connection.
func (c *Conn) gc() gnet.Conn { return c.timer.Value() }

// scanned returns how many bytes of the request head were already searched for its end.
// Only meaningful in stateHandshake (it shares rateTAT's word).
func (c *Conn) scanned() int { return int(c.rateTAT) }

// setScanned records that the first n bytes of the head were searched.
func (c *Conn) setScanned(n int) { c.rateTAT = int64(n) }

// connFlags packs a Conn's small facts into one byte: bit 0 is flagCongested, bits 1-2
// count unanswered pings (pingsMask), bit 3 is flagHeld, bit 4 flagPeerCode.
type connFlags uint8

const (
	// flagCongested: c is in shard.congested, so queued may be non-zero.
	flagCongested connFlags = 1
	// flagHeld: Loop.Broadcast passes c by (see Hold).
	flagHeld connFlags = 1 << 3
	// flagPeerCode: closeCode is the peer's, which closed first.
	flagPeerCode connFlags = 1 << 4
)

// The unanswered-ping count, up to maxUnanswered. The oldest of them went out that many
// heartbeats before nextPing (a ping sets nextPing to its send time plus Heartbeat), so the
// RTT of its pong needs no timestamp field. With the defaults (30 s pings, 75 s idle
// timeout) a silent socket is reaped after two; where IdleTimeout allows more than three,
// a pong that late is timed from the third newest ping, a short sample of a socket that
// is nearly dead anyway.
const (
	pingsShift    = 1
	pingsMask     = connFlags(3) << pingsShift
	maxUnanswered = 3
)

// unanswered returns how many pings went out since the last pong, at most maxUnanswered.
func (c *Conn) unanswered() int { return int((c.flags & pingsMask) >> pingsShift) }

// setUnanswered records n unanswered pings.
func (c *Conn) setUnanswered(n int) {
	c.flags = c.flags&^pingsMask | connFlags(min(n, maxUnanswered))<<pingsShift
}

// upgraded reports whether the 101 went out, so c is counted in Active and known to the App.
func (c *Conn) upgraded() bool { return c.nextPing != 0 }

// Hold makes WriteFrame, the fan-out write (Loop.Broadcast's and the App's), refuse c
// until Release, for an App whose first message must go out before any fan-out (pub/sub's
// welcome, written with WriteMessage). Runs on c's loop.
func (c *Conn) Hold() { c.flags |= flagHeld }

// Release ends Hold. Runs on c's loop.
func (c *Conn) Release() { c.flags &^= flagHeld }

// Held reports whether c is held (see Hold). Runs on c's loop.
func (c *Conn) Held() bool { return c.flags&flagHeld != 0 }

// Open reports whether c is upgraded and not closing: messages written now may arrive.
func (c *Conn) Open() bool { return c.state == stateOpen }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() string {
	if a := c.gc().RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// WriteMessage frames payload as one unfragmented message of type op and writes it. It
// reports whether the connection was still open to take it; a write error closes the
// connection (gnet runs OnClose inside the call).
func (c *Conn) WriteMessage(op codec.OpCode, payload []byte) bool {
	if c.state != stateOpen {
		return false
	}
	sh := c.sh
	if len(payload) <= smallWrite {
		sh.buf = codec.AppendFrame(sh.buf[:0], op, true, payload)
		_, _ = c.gc().Write(sh.buf)
	} else {
		sh.hdr = codec.AppendFrameHeader(sh.hdr[:0], op, true, len(payload))
		sh.iov[0], sh.iov[1] = sh.hdr, payload
		_, _ = c.gc().Writev(sh.iov[:])
		sh.iov[0], sh.iov[1] = nil, nil
	}
	sh.h.cfg.Observer.Sent(1)
	return c.afterWrite(codec.FrameSize(len(payload)))
}

// WriteFrame writes an already encoded frame (a message encoded once for many sockets)
// and reports whether c was open, and not held (Hold), to take it. frame is not retained
// past the call unless
// the socket is congested, in which case gnet copies it into the connection's outbound
// buffer. Unlike WriteMessage it does not report to Observer.Sent: a fan-out counts its
// deliveries and reports them once, so a broadcast does not touch a shared counter per
// socket.
func (c *Conn) WriteFrame(frame []byte) bool {
	if c.state != stateOpen || c.Held() {
		return false
	}
	_, _ = c.gc().Write(frame)
	return c.afterWrite(len(frame))
}

// afterWrite accounts what gnet now holds for c after a write of n bytes, and closes c
// with 4000 when the backlog in front of that write is over the limit; it reports whether
// c is still open. gnet buffers whatever the kernel would not take, without bound, so this
// is where a slow consumer is caught. The write itself is not held against the limit, so
// one message larger than SendBufferLimit can still go to a client that reads. A closing
// socket is held to the limit too: it still answers pings (§5.5.2), and a peer that pings
// without reading must not grow the heap with pongs.
func (c *Conn) afterWrite(n int) bool {
	if c.state != stateOpen && c.state != stateClosing {
		return false
	}
	q := c.gc().OutboundBuffered()
	if int32(q) == c.queued {
		return c.state == stateOpen
	}
	c.sh.account(c, q)
	if limit := c.sh.h.cfg.SendBufferLimit; limit > 0 && q-n > limit {
		c.sh.h.cfg.Observer.SlowConsumer()
		c.abort(codec.CloseSlowConsumer)
		return false
	}
	return c.state == stateOpen
}

// ExpireAt sets when the connection's credentials expire: at t, on the wall clock, it is
// closed with 4003. Call it from App.Accept; the zero t means never. The expiry is kept in
// whole seconds, rounded up (a JWT's exp is whole seconds already); a t after 2106, past
// what 32 bits of Unix seconds hold, means never as well.
func (c *Conn) ExpireAt(t time.Time) {
	c.expires = expirySeconds(t)
}

// untilExpiry returns how long c's credentials have left at now, read on the wall clock
// (the expiry is a wall-clock time); at most 0 once they expired. The heartbeat compares
// it and arms the timer with it, both from the same now, so a step of the wall clock
// moves the expiry with it instead of leaving a deadline in the past to fire every tick.
// Only meaningful when c.expires != 0.
func (c *Conn) untilExpiry(now time.Time) time.Duration {
	return time.Unix(int64(c.expires), 0).Sub(now)
}

// expirySeconds returns t as ExpireAt keeps it: Unix seconds rounded up, at least 1 (a t
// before 1970 has passed already), and 0 for the zero t or one beyond uint32 seconds.
func expirySeconds(t time.Time) uint32 {
	if t.IsZero() {
		return 0
	}
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	switch {
	case s > math.MaxUint32:
		return 0
	case s < 1:
		return 1
	}
	return uint32(s)
}

// Close starts a server-initiated close: the close frame goes out, and the TCP connection
// is closed when the peer answers or after Config.CloseTimeout.
func (c *Conn) Close(code codec.CloseCode, reason string) {
	if c.state != stateOpen {
		return
	}
	c.closeCode = code
	c.state = stateClosing
	c.sh.buf = codec.AppendClose(c.sh.buf[:0], code, reason)
	_, _ = c.gc().Write(c.sh.buf)
	if c.state == stateClosing { // the write may have failed and closed it
		c.expires = outboundMark(c.gc().OutboundBuffered())
		c.sh.schedule(&c.timer, c.sh.now.Add(c.sh.h.cfg.CloseTimeout))
	}
}

// outboundMark is q outbound bytes as a closing connection's progress mark.
func outboundMark(q int) uint32 { return uint32(min(q, math.MaxUint32)) }

// abort sends a best-effort close frame and closes the TCP connection at once: for zombies
// and slow consumers, whose peer may never read it.
func (c *Conn) abort(code codec.CloseCode) {
	if c.state == stateOpen {
		c.closeCode = code
		c.sh.buf = codec.AppendClose(c.sh.buf[:0], code, "")
		_, _ = c.gc().Write(c.sh.buf)
	}
	c.hardClose()
}

// hardClose closes the TCP connection now; OnClose runs inside the call.
func (c *Conn) hardClose() {
	if c.state != stateClosed {
		_ = c.sh.el.Close(c.gc())
	}
}

// fail answers a protocol violation: close frame with its code, then linger.
func (c *Conn) fail(code codec.CloseCode) {
	c.closeCode = code
	c.sh.buf = codec.AppendClose(c.sh.buf[:0], code, "")
	_, _ = c.gc().Write(c.sh.buf)
	c.linger()
}

// linger shuts the write side (so the peer reads what was sent, then EOF), discards
// further input, and closes the connection when the peer closes or CloseTimeout passes.
// Closing at once instead could make the kernel answer unread input with a reset, which
// can destroy the response or close frame before the peer reads it.
func (c *Conn) linger() {
	if c.state == stateClosed {
		return
	}
	c.state = stateLinger
	if c.gc().OutboundBuffered() == 0 {
		_ = unix.Shutdown(c.gc().Fd(), unix.SHUT_WR)
	}
	c.sh.schedule(&c.timer, c.sh.now.Add(c.sh.h.cfg.CloseTimeout))
}

// clock returns the loop clock reading for t: nanoseconds since the shard's epoch, on the
// monotonic clock when t has a monotonic reading (time.Now's do), so a step of the wall
// clock moves no deadline. Safe from any goroutine: epoch never changes.
func (sh *shard) clock(t time.Time) int64 { return int64(t.Sub(sh.epoch)) }
