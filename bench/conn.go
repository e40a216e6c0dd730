package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/timerwheel"
)

// conn states.
const (
	connDialing     uint8 = iota // queued for or inside a dial
	connHandshaking              // upgrade request sent, waiting for 101
	connOpen                     // upgraded
	connWaiting                  // closed; a reconnect is scheduled on the wheel
	connDone                     // closed for good
)

// conn is one client socket. Every field is touched only on its loop once enrolled (and by
// a dial goroutine before that).
type conn struct {
	w      *Worker
	ls     *loopState
	gc     gnet.Conn
	timer  timerwheel.Timer[*conn]
	dec    codec.Decoder
	frag   []byte
	dialAt time.Time // start of the current dial
	downAt time.Time // when the server dropped it (reconnect scenario)
	hint   time.Duration
	idx    int32 // position in ls.conns while enrolled
	src    uint16
	tries  uint8 // consecutive failed reconnects, saturating (see failedAgain)
	state  uint8
	byUs   bool  // we closed it (churn, stop)
	kind   uint8 // why it is being dialled: kindFirst, kindReconnect or kindChurn
	// subPending: a first connect's sub awaits its answer; Ready waits for every one to
	// be confirmed, refused or ended with the socket.
	subPending bool
	cause      string // why the handshake failed, for OnClose to count
}

// Why a socket is dialled.
const (
	kindFirst     uint8 = iota // the ramp: counts toward Ready
	kindReconnect              // the server dropped it (reconnect scenario)
	kindChurn                  // a replacement opened by the churn scenario
)

// loopState is the per-event-loop part of a worker: its sockets and its wheel.
type loopState struct {
	w      *Worker
	el     gnet.EventLoop
	conns  []*conn
	wheel  *timerwheel.Wheel[*conn]
	fire   func(*conn)
	buf    []byte
	next   int       // round-robin cursor for open-loop echo and churn
	credit float64   // fractional sends or closes carried between ticks
	pay    []byte    // echo payload scratch
	last   time.Time // previous tick, for pacing by elapsed time
}

func (ls *loopState) add(c *conn) {
	c.idx = int32(len(ls.conns))
	ls.conns = append(ls.conns, c)
}

func (ls *loopState) remove(c *conn) {
	last := len(ls.conns) - 1
	moved := ls.conns[last]
	ls.conns[c.idx], moved.idx = moved, c.idx
	ls.conns[last] = nil
	ls.conns = ls.conns[:last]
}

// handler is the gnet.EventHandler of a worker's client.
type handler struct {
	gnet.BuiltinEventEngine
	w *Worker
}

func (h *handler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	c, _ := gc.Context().(*conn)
	if c == nil {
		return nil, gnet.Close
	}
	c.gc = gc
	c.timer.Init(c)
	c.ls = h.w.loopOf(gc.EventLoop())
	c.ls.add(c)
	c.state = connHandshaking
	c.dec = codec.Decoder{Client: true}
	if h.w.cfg.Raw {
		h.w.opened(c) // no upgrade: the socket is ready as soon as it is connected
		return nil, gnet.None
	}
	c.ls.wheel.Schedule(&c.timer, c.dialAt.Add(h.w.cfg.DialTimeout))
	return h.w.request, gnet.None
}

func (h *handler) OnClose(gc gnet.Conn, _ error) gnet.Action {
	c, _ := gc.Context().(*conn)
	if c == nil || c.ls == nil {
		return gnet.None
	}
	w := h.w
	c.ls.remove(c)
	c.ls.wheel.Stop(&c.timer)
	c.frag = nil
	wasOpen := c.state == connOpen
	if wasOpen {
		w.stats.live.Add(-1)
	}
	w.settleSub(c) // closed before its sub was answered: settled, not subscribed
	if c.state == connHandshaking {
		// A failed upgrade: counted once here, whatever ended it.
		cause := c.cause
		if cause == "" {
			cause = "closed_during_handshake"
		}
		c.cause = ""
		w.stats.fail(cause)
		if c.kind == kindReconnect && !w.stopping.Load() {
			// A draining node still accepts and closes at once; try again, later.
			c.failedAgain()
			w.scheduleReconnect(c)
			return gnet.None
		}
		w.settleFailed(c)
	}
	c.state = connDone
	if !wasOpen || c.byUs || w.stopping.Load() {
		return gnet.None
	}
	w.stats.closedByServer.Add(1)
	w.stats.disconnected.Add(1)
	if w.cfg.Scenario == ScenarioReconnect {
		now := time.Now()
		w.stats.firstDrop.CompareAndSwap(0, now.UnixNano())
		c.downAt, c.kind = now, kindReconnect
		w.scheduleReconnect(c)
	}
	return gnet.None
}

func (h *handler) OnTraffic(gc gnet.Conn) gnet.Action {
	c, _ := gc.Context().(*conn)
	if c == nil {
		return gnet.Close
	}
	if h.w.cfg.Raw {
		return h.w.rawEchoes(c)
	}
	buf, _ := gc.Peek(-1)
	off := 0
	if c.state == connHandshaking {
		end := bytes.Index(buf, []byte("\r\n\r\n"))
		if end < 0 {
			if len(buf) > 8<<10 {
				c.cause = "bad_response"
				return gnet.Close
			}
			return gnet.None
		}
		if !bytes.HasPrefix(buf, []byte("HTTP/1.1 101")) {
			cause := "bad_response"
			if len(buf) >= 12 && bytes.HasPrefix(buf, []byte("HTTP/1.")) {
				cause = "http_" + string(buf[9:12])
			}
			c.cause = cause
			return gnet.Close
		}
		off = end + 4
		h.w.opened(c)
	}
	for off < len(buf) && c.state == connOpen {
		f, n, err := c.dec.Decode(buf[off:], maxServerMessage)
		if errors.Is(err, codec.ErrIncomplete) {
			break
		}
		if err != nil {
			h.w.stats.errors.Add(1)
			_, _ = gc.Discard(-1)
			return gnet.Close
		}
		off += n
		if act := h.w.frame(c, &f); act != gnet.None {
			_, _ = gc.Discard(off)
			return act
		}
	}
	if off > 0 {
		_, _ = gc.Discard(off)
	}
	return gnet.None
}

// OnTick posts a wheel advance (and the scenario's per-tick work) to every loop, on
// whole multiples of the tick (timerwheel.UntilBoundary), as the server does.
func (h *handler) OnTick() (time.Duration, gnet.Action) {
	for _, ls := range h.w.loopList() {
		_ = ls.el.Execute(context.Background(), ls)
	}
	return timerwheel.UntilBoundary(time.Now(), h.w.cfg.Tick), gnet.None
}

// maxServerMessage is the largest server message the swarm decodes: far above any
// benchmark payload, so a limit is never what a run measures.
const maxServerMessage = 64 << 20

// DefaultTick is Config.Tick's default: fine enough to pace open-loop echo smoothly.
const DefaultTick = 10 * time.Millisecond

// mask is the client's masking key. RFC 6455 wants it unpredictable to stop cache
// poisoning through proxies; a load generator talking to its own server on loopback has
// no such adversary, and a fixed key keeps the swarm from spending CPU on randomness.
var mask = [4]byte{0x5a, 0x3c, 0x96, 0x69}

// write sends one masked client frame. Runs on c's loop.
func (c *conn) write(op codec.OpCode, payload []byte) {
	c.ls.buf = codec.AppendClientFrame(c.ls.buf[:0], op, true, payload, mask)
	_, _ = c.gc.Write(c.ls.buf)
}

// frame handles one server frame; a non-None action ends the connection.
func (w *Worker) frame(c *conn, f *codec.Frame) gnet.Action {
	switch f.Op {
	case codec.OpPing:
		w.stats.pings.Add(1)
		c.write(codec.OpPong, f.Payload)
		return gnet.None
	case codec.OpPong:
		return gnet.None
	case codec.OpClose:
		// Echo the code (RFC 6455 §5.5.1), then close.
		var body [2]byte
		code, _, _ := codec.ParseClose(f.Payload)
		if code == codec.CloseNoStatus {
			c.write(codec.OpClose, nil)
		} else {
			binary.BigEndian.PutUint16(body[:], uint16(code))
			c.write(codec.OpClose, body[:])
		}
		return gnet.Close
	}
	if !f.Fin || c.frag != nil {
		c.frag = append(c.frag, f.Payload...)
		if !f.Fin {
			return gnet.None
		}
		msg := c.frag
		c.frag = nil
		w.message(c, msg)
		return gnet.None
	}
	w.message(c, f.Payload)
	return gnet.None
}

// Markers the swarm looks for in server messages.
var (
	benchTag    = []byte("wsr-bench:")
	shutdownTag = []byte(`"SERVER_SHUTDOWN"`)
	hintTag     = []byte(`"reconnectInMs":`)
	subscribed  = []byte(`"type":"subscribed"`)
	welcomeTag  = []byte(`"type":"welcome"`)
	errorTag    = []byte(`"type":"error"`)
)

// message handles one complete server message.
func (w *Worker) message(c *conn, p []byte) {
	switch w.cfg.Scenario {
	case ScenarioEcho:
		if len(p) >= 8 && p[0] == 'E' {
			sent := int64(binary.LittleEndian.Uint64(p[len(p)-8:]))
			w.stats.received.Add(1)
			w.stats.mu.Lock()
			record(w.stats.latency, time.Duration(time.Now().UnixNano()-sent))
			w.stats.mu.Unlock()
			if w.cfg.Rate == 0 && w.running.Load() {
				w.sendEcho(c)
			}
			return
		}
	}
	// Any scenario but echo records tagged publishes, so messages published from outside
	// (scripts/scale.sh) into an idle or reconnect run are counted and timed too.
	if i := bytes.Index(p, benchTag); i >= 0 {
		w.delivered(p[i+len(benchTag):])
		return
	}
	switch {
	case bytes.Contains(p, subscribed):
		w.stats.subscribed.Add(1)
		w.settleSub(c)
	case bytes.Contains(p, errorTag):
		// The server refused a message of ours: the sub (a channel it will not take) is
		// the only one a swarm socket sends before its scenario starts.
		w.stats.errors.Add(1)
		w.settleSub(c)
	case bytes.Contains(p, shutdownTag):
		if i := bytes.Index(p, hintTag); i >= 0 {
			rest := p[i+len(hintTag):]
			j := 0
			for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
				j++
			}
			if ms, err := strconv.Atoi(string(rest[:j])); err == nil {
				c.hint = time.Duration(ms) * time.Millisecond
			}
		}
	case bytes.Contains(p, welcomeTag):
	}
}

// delivered records one broadcast arrival: "seq:unixnano:" follows the tag.
func (w *Worker) delivered(p []byte) {
	seqEnd := bytes.IndexByte(p, ':')
	if seqEnd < 0 {
		return
	}
	seq, err1 := strconv.Atoi(string(p[:seqEnd]))
	rest := p[seqEnd+1:]
	tEnd := bytes.IndexByte(rest, ':')
	if tEnd < 0 || err1 != nil {
		return
	}
	sent, err := strconv.ParseInt(string(rest[:tEnd]), 10, 64)
	if err != nil {
		return
	}
	now := time.Now().UnixNano()
	w.stats.received.Add(1)
	w.stats.mu.Lock()
	record(w.stats.latency, time.Duration(now-sent))
	w.stats.lastSeen[seq] = max(w.stats.lastSeen[seq], now)
	w.stats.seqSent[seq] = sent
	w.stats.mu.Unlock()
}

// sendEcho sends one binary echo message: 'E', padding, and the send time (unix ns) in the
// last 8 bytes. Runs on c's loop.
func (w *Worker) sendEcho(c *conn) {
	ls := c.ls
	if len(ls.pay) != w.cfg.Size {
		ls.pay = make([]byte, w.cfg.Size)
		ls.pay[0] = 'E'
		for i := 1; i < len(ls.pay)-8; i++ {
			ls.pay[i] = 'x'
		}
	}
	p := ls.pay
	binary.LittleEndian.PutUint64(p[len(p)-8:], uint64(time.Now().UnixNano()))
	// Raw mode sends the very same masked frame: the floor server echoes its bytes back
	// unread, so both servers see identical traffic from an identical client.
	c.ls.buf = codec.AppendClientFrame(c.ls.buf[:0], codec.OpBinary, true, p, mask)
	_, _ = c.gc.Write(c.ls.buf)
	w.stats.sent.Add(1)
}

// rawEchoes consumes whole echoes from a raw TCP socket (Config.Raw): the floor measurement
// against a bare TCP echo server, which returns each masked frame byte for byte. The send
// time is in the frame's last 8 bytes, masked with a fixed key, so it is unmasked in place.
func (w *Worker) rawEchoes(c *conn) gnet.Action {
	n := codec.FrameSize(w.cfg.Size) + len(mask)
	for c.gc.InboundBuffered() >= n {
		p, err := c.gc.Peek(n)
		if err != nil {
			break
		}
		payload := p[n-w.cfg.Size:]
		ws.Cipher(payload, mask, 0)
		w.message(c, payload)
		_, _ = c.gc.Discard(n)
	}
	return gnet.None
}
