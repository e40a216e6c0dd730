package server_test

// This file holds TestHostile and the ht-prefixed helpers that hostile_test.go,
// conformance_test.go, sockfuzz_test.go and leakall_test.go share. They are kept apart from
// helpers_test.go on purpose: each of these files drives the wire by hand and asserts exact
// bytes, and the helpers say exactly what they check.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// Server configurations TestHostile's rows run against.
const (
	htLimits       = "limits"       // MaxMessageBytes 1 KiB, everything else default
	htSlowloris    = "slowloris"    // HandshakeTimeout htHandshakeTimeout
	htRate         = "rate"         // ClientRate 50 (burst 100)
	htSlowConsumer = "slowconsumer" // SendBufferLimit 64 KiB
)

const (
	htMaxMessage       = 1024
	htHandshakeTimeout = 500 * time.Millisecond
	htClientRate       = 50
	htSendBufferLimit  = 64 << 10
)

// htConfigs maps each configuration name to its Options.
var htConfigs = map[string]server.Options{
	htLimits:       {MaxMessageBytes: htMaxMessage},
	htSlowloris:    {HandshakeTimeout: htHandshakeTimeout},
	htRate:         {ClientRate: htClientRate},
	htSlowConsumer: {SendBufferLimit: htSendBufferLimit},
}

// hostileRow is one kind of bad client. Exactly one of request, wire and drive is set.
type hostileRow struct {
	name   string
	config string // key of htConfigs
	// request is sent instead of a valid upgrade request; the server must answer
	// wantStatus (with wantHeader when set) and then end the connection.
	request    []byte
	wantStatus int
	wantHeader string // "Name: value"
	// wire is sent in one write after a valid upgrade; the server must send a close frame
	// with wantCode (data frames before it are allowed) and then end the connection.
	wire     []byte
	wantCode codec.CloseCode
	// echoes is the range of data frames the server may send before its close frame;
	// zero means none.
	echoes [2]int
	// drive runs rows that need a conversation rather than one write.
	drive func(t *testing.T, s *servertest.Server, row hostileRow)
	// counters are the series that must grow by exactly one because of the row.
	counters []string
}

// TestHostile sends each kind of hostile input over a real socket and checks the exact HTTP
// status or close code, the end of the TCP connection, the metric that counts it, and that
// a healthy client (one connected before the row, and a fresh one after it) still echoes.
func TestHostile(t *testing.T) {
	frame := htMasked
	cat := htCat
	rng := rand.New(rand.NewPCG(6455, 1))
	garbage := make([]byte, 300)
	for i := range garbage {
		// Random bytes with no CR or LF, so the head ends only at the CRLFCRLF appended.
		for garbage[i] = byte(rng.UintN(256)); garbage[i] == '\r' || garbage[i] == '\n'; garbage[i] = byte(rng.UintN(256)) {
		}
	}
	garbage = append(garbage, "\r\n\r\n"...)

	// The fragmented-sum row: two fragments that are each under the limit.
	half := bytes.Repeat([]byte("a"), htMaxMessage/2+100)
	rateBurst := make([][]byte, 4*htClientRate) // twice the burst, in one write
	for i := range rateBurst {
		rateBurst[i] = frame(codec.OpText, true, []byte("m"+strconv.Itoa(i)))
	}

	rows := []hostileRow{
		// Before the upgrade (DESIGN.md, Close codes: "Before the upgrade").
		{
			name: "non-GET", config: htLimits,
			request:    htRequest("POST / HTTP/1.1", htBaseHeaders...),
			wantStatus: 405, wantHeader: "Allow: GET",
			counters: []string{htUpgradeSeries("method")},
		},
		{
			name: "HTTP/1.0", config: htLimits,
			request:    htRequest("GET / HTTP/1.0", htBaseHeaders...),
			wantStatus: 400,
			counters:   []string{htUpgradeSeries("bad_request")},
		},
		{
			name: "missing key", config: htLimits,
			request:    htRequest("GET / HTTP/1.1", htWithout("Sec-WebSocket-Key")...),
			wantStatus: 400,
			counters:   []string{htUpgradeSeries("bad_request")},
		},
		{
			name: "bad key", config: htLimits,
			request:    htRequest("GET / HTTP/1.1", htReplace("Sec-WebSocket-Key", "not-base64-of-16-bytes")...),
			wantStatus: 400,
			counters:   []string{htUpgradeSeries("bad_request")},
		},
		{
			name: "wrong version", config: htLimits,
			request:    htRequest("GET / HTTP/1.1", htReplace("Sec-WebSocket-Version", "8")...),
			wantStatus: 426, wantHeader: "Sec-WebSocket-Version: 13",
			counters: []string{htUpgradeSeries("version")},
		},
		{
			name: "header block over 8 KiB", config: htLimits,
			request:    htRequest("GET / HTTP/1.1", append(htWithout(""), "X-Pad: "+strings.Repeat("p", 9<<10))...),
			wantStatus: 431,
			counters:   []string{htUpgradeSeries("too_large")},
		},
		{
			name: "garbage instead of HTTP", config: htLimits,
			request:    garbage,
			wantStatus: 400,
			counters:   []string{htUpgradeSeries("bad_request")},
		},
		{
			name: "slowloris", config: htSlowloris,
			drive:    htSlowlorisDrive,
			counters: []string{htUpgradeSeries("timeout")},
		},

		// After the upgrade: RFC 6455 §5 framing.
		{
			name: "unmasked frame", config: htLimits,
			wire:     codec.AppendFrame(nil, codec.OpText, true, []byte("hello")),
			wantCode: 1002, counters: []string{htCloseSeries(1002)},
		},
		{
			name: "RSV1 set", config: htLimits,
			wire:     htRSV(frame(codec.OpText, true, []byte("hello")), 0x40),
			wantCode: 1002, counters: []string{htCloseSeries(1002)},
		},
		{
			name: "reserved opcode 3", config: htLimits,
			wire:     frame(0x3, true, []byte("x")),
			wantCode: 1002, counters: []string{htCloseSeries(1002)},
		},
		{
			name: "reserved opcode 0xB", config: htLimits,
			wire:     frame(0xB, true, nil),
			wantCode: 1002, counters: []string{htCloseSeries(1002)},
		},
		{
			name: "fragmented ping", config: htLimits,
			wire:     frame(codec.OpPing, false, []byte("x")),
			wantCode: 1002, counters: []string{htCloseSeries(1002)},
		},
		{
			name: "ping with a 126-byte payload", config: htLimits,
			wire:     frame(codec.OpPing, true, bytes.Repeat([]byte("p"), 126)),
			wantCode: 1002, counters: []string{htCloseSeries(1002)},
		},
		{
			name: "continuation without a start", config: htLimits,
			wire:     frame(codec.OpContinuation, true, []byte("x")),
			wantCode: 1002, counters: []string{htCloseSeries(1002)},
		},
		{
			name: "new text frame inside a fragmented message", config: htLimits,
			wire:     cat(frame(codec.OpText, false, []byte("a")), frame(codec.OpText, true, []byte("b"))),
			wantCode: 1002, counters: []string{htCloseSeries(1002)},
		},
		{
			name: "64-bit length with the top bit set", config: htLimits,
			wire:     []byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4},
			wantCode: 1002, counters: []string{htCloseSeries(1002)},
		},
		{
			name: "16-bit length encoding a 5-byte payload", config: htLimits,
			wire:     []byte{0x81, 0x80 | 126, 0, 5, 0, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'},
			wantCode: 1002, counters: []string{htCloseSeries(1002)},
		},

		// Limits and UTF-8.
		{
			name: "message over the limit in one frame", config: htLimits,
			wire:     frame(codec.OpBinary, true, make([]byte, htMaxMessage+1)),
			wantCode: 1009, counters: []string{htCloseSeries(1009)},
		},
		{
			name: "message over the limit declared, payload never sent", config: htLimits,
			wire:     []byte{0x82, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4},
			wantCode: 1009, counters: []string{htCloseSeries(1009)},
		},
		{
			name: "message over the limit as a fragmented sum", config: htLimits,
			wire:     cat(frame(codec.OpBinary, false, half), frame(codec.OpContinuation, true, half)),
			wantCode: 1009, counters: []string{htCloseSeries(1009)},
		},
		{
			name: "invalid UTF-8 in a whole message", config: htLimits,
			wire:     frame(codec.OpText, true, []byte("ok\xc3\x28")),
			wantCode: 1007, counters: []string{htCloseSeries(1007)},
		},
		{
			name: "invalid UTF-8 split across fragments", config: htLimits,
			// E2 82 is a valid prefix of a 3-byte character; 28 cannot continue it.
			wire:     cat(frame(codec.OpText, false, []byte("ok\xe2\x82")), frame(codec.OpContinuation, true, []byte("\x28ok"))),
			wantCode: 1007, counters: []string{htCloseSeries(1007)},
		},

		// Close frames (RFC 6455 §5.5.1, §7.4).
		{
			name: "close with a 1-byte payload", config: htLimits,
			wire:     frame(codec.OpClose, true, []byte{0x03}),
			wantCode: 1002, counters: []string{htCloseSeries(1002)},
		},
		{
			name: "close with code 1005", config: htLimits,
			wire:     frame(codec.OpClose, true, htClosePayload(1005, "")),
			wantCode: 1002, counters: []string{htCloseSeries(1002)},
		},
		{
			name: "close with code 1006", config: htLimits,
			wire:     frame(codec.OpClose, true, htClosePayload(1006, "")),
			wantCode: 1002, counters: []string{htCloseSeries(1002)},
		},
		{
			name: "close with code 999", config: htLimits,
			wire:     frame(codec.OpClose, true, htClosePayload(999, "")),
			wantCode: 1002, counters: []string{htCloseSeries(1002)},
		},
		{
			name: "close with code 5000", config: htLimits,
			wire:     frame(codec.OpClose, true, htClosePayload(5000, "")),
			wantCode: 1002, counters: []string{htCloseSeries(1002)},
		},
		{
			name: "close reason not UTF-8", config: htLimits,
			wire:     frame(codec.OpClose, true, htClosePayload(1000, "bye\xff")),
			wantCode: 1007, counters: []string{htCloseSeries(1007)},
		},

		// Floods and slow peers.
		{
			name: "ping flood answered in full", config: htLimits,
			drive:    htPingFloodDrive,
			counters: []string{htCloseSeries(1000)}, // the client's own clean close at the end
		},
		{
			name: "faster than the client rate", config: htRate,
			wire:     cat(rateBurst...),
			wantCode: 4029, counters: []string{htCloseSeries(4029)},
			// The bucket starts full (twice the rate); the write takes far less than
			// the second that would refill it.
			echoes: [2]int{2 * htClientRate, 3 * htClientRate},
		},
		{
			name: "never reads", config: htSlowConsumer,
			drive:    htSlowConsumerDrive,
			wantCode: 4000,
			counters: []string{htCloseSeries(4000), "ws_slow_consumers_total"},
		},
	}

	// One server per configuration, each with a keeper: a client connected before the
	// first row that must still echo after every row.
	servers := map[string]*servertest.Server{}
	keepers := map[string]*websocket.Conn{}
	for name, opts := range htConfigs {
		opts.Loops = 2
		servers[name] = servertest.Start(t, opts)
		keepers[name] = htDialGorilla(t, servers[name])
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			s, keeper := servers[row.config], keepers[row.config]
			before := s.Metrics(t)

			switch {
			case row.request != nil:
				htRejectRow(t, s, row)
			case row.wire != nil:
				htCloseRow(t, s, row)
			default:
				row.drive(t, s, row)
			}

			for _, series := range row.counters {
				s.WaitMetric(t, series, before[series]+1)
			}
			// Only the keeper is left, and nothing is left queued.
			s.WaitMetric(t, "ws_connections_active", 1)
			s.WaitMetric(t, "ws_send_buffer_bytes", 0)
			htGorillaEcho(t, keeper, "keeper after "+row.name)
			htHealthyEcho(t, s)
		})
	}
	for name, s := range servers {
		htGorillaClose(t, keepers[name])
		s.Stop(t)
	}
}

// htRejectRow sends row.request and checks the HTTP error and the end of the connection.
func htRejectRow(t *testing.T, s *servertest.Server, row hostileRow) {
	c := htDial(t, s.Addr)
	c.write(t, row.request)
	_ = c.nc.SetReadDeadline(time.Now().Add(htSlack))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response body: %v", err)
	}
	if resp.StatusCode != row.wantStatus {
		t.Fatalf("status = %d (%q), want %d", resp.StatusCode, body, row.wantStatus)
	}
	if row.wantHeader != "" {
		name, value, _ := strings.Cut(row.wantHeader, ": ")
		if got := resp.Header.Get(name); got != value {
			t.Errorf("%s = %q, want %q", name, got, value)
		}
	}
	if !resp.Close { // net/http moves "Connection: close" into Close
		t.Errorf("response without Connection: close")
	}
	if err := c.expectEOF(htSlack); err != nil {
		t.Errorf("after the %d response: %v", resp.StatusCode, err)
	}
}

// htCloseRow upgrades, sends row.wire, and checks the close frame and the end of the
// connection.
func htCloseRow(t *testing.T, s *servertest.Server, row hostileRow) {
	c := htUpgrade(t, s.Addr)
	c.write(t, row.wire)
	res, err := c.readClose(htSlack)
	if err != nil {
		t.Fatalf("want close %d then EOF: %v (after %d data frames)", row.wantCode, err, res.data)
	}
	// Closing now ends the server's linger at once instead of at its close timeout.
	_ = c.nc.Close()
	if res.code != row.wantCode {
		t.Fatalf("close code = %d, want %d", res.code, row.wantCode)
	}
	if res.data < row.echoes[0] || res.data > row.echoes[1] {
		t.Errorf("%d data frames before the close, want %d to %d", res.data, row.echoes[0], row.echoes[1])
	}
}

// htSlowlorisDrive trickles a request head one byte at a time and checks that the server
// ends the connection at its handshake timeout, with no response.
func htSlowlorisDrive(t *testing.T, s *servertest.Server, _ hostileRow) {
	c := htDial(t, s.Addr)
	type ended struct {
		got   []byte
		err   error
		after time.Duration
	}
	start := time.Now()
	done := make(chan ended, 1)
	go func() {
		_ = c.nc.SetReadDeadline(time.Now().Add(htHandshakeTimeout + htSlack))
		got, err := io.ReadAll(c.nc)
		done <- ended{got, err, time.Since(start)}
	}()
	// The head never ends: the request line, then a header that grows forever.
	head := []byte("GET / HTTP/1.1\r\nHost: " + s.Addr + "\r\nX-Slow: ")
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case e := <-done:
			if e.err != nil && !htIsClosed(e.err) {
				t.Fatalf("connection still open %v after connecting (handshake timeout %v): %v", e.after, htHandshakeTimeout, e.err)
			}
			if len(e.got) > 0 {
				t.Errorf("server answered the unfinished head with %q, want no response", e.got)
			}
			// The deadline is armed when the server accepts, which is after Dial returned.
			if e.after < htHandshakeTimeout-20*time.Millisecond {
				t.Errorf("closed %v after connecting, before the %v handshake timeout", e.after, htHandshakeTimeout)
			}
			t.Logf("closed %v after connecting (handshake timeout %v), %d bytes trickled", e.after, htHandshakeTimeout, i)
			return
		case <-tick.C:
			b := byte('a')
			if i < len(head) {
				b = head[i]
			}
			_ = c.nc.SetWriteDeadline(time.Now().Add(htSlack))
			_, _ = c.nc.Write([]byte{b}) // fails once the server is gone; the reader reports it
		}
	}
}

// htPingFloodDrive sends 10,000 pings in one write and checks that a pong with the same
// payload answers each, in order, with no rate limit configured; then it closes cleanly.
func htPingFloodDrive(t *testing.T, s *servertest.Server, _ hostileRow) {
	const pings = 10000
	c := htUpgrade(t, s.Addr)
	payload := func(i int) []byte {
		p := binary.BigEndian.AppendUint32(nil, uint32(i))
		return append(p, bytes.Repeat([]byte{byte(i)}, i%16)...)
	}
	var wire []byte
	for i := range pings {
		wire = htAppendMasked(wire, codec.OpPing, true, payload(i))
	}
	werr := make(chan error, 1)
	go func() {
		_ = c.nc.SetWriteDeadline(time.Now().Add(htSlack))
		_, err := c.nc.Write(wire)
		werr <- err
	}()
	deadline := time.Now().Add(2 * htSlack)
	for i := range pings {
		f, err := c.readFrame(time.Until(deadline))
		if err != nil {
			t.Fatalf("after %d of %d pongs: %v", i, pings, err)
		}
		if f.op != codec.OpPong {
			t.Fatalf("frame %d: opcode %d (payload %q), want a pong", i, f.op, f.payload)
		}
		if want := payload(i); !bytes.Equal(f.payload, want) {
			t.Fatalf("pong %d payload = %x, want %x", i, f.payload, want)
		}
	}
	if err := <-werr; err != nil {
		t.Fatalf("writing the pings: %v", err)
	}
	c.write(t, htMasked(codec.OpClose, true, htClosePayload(1000, "done")))
	res, err := c.readClose(htSlack)
	if err != nil || res.code != 1000 || res.data != 0 {
		t.Fatalf("closing after the flood: code %d, %d extra frames, %v; want the echo of 1000 then EOF", res.code, res.data, err)
	}
}

// htSlowConsumerDrive connects with a small receive buffer, sends 32 KiB echo requests
// without reading until the server gives up on it, and checks that what it then reads ends
// with close 4000 (when the best-effort close frame arrives at all) and the end of the
// connection.
func htSlowConsumerDrive(t *testing.T, s *servertest.Server, row hostileRow) {
	nc := htDialSmallRcvBuf(t, s.Addr, 4096)
	c := &htConn{nc: nc, br: bufio.NewReader(nc)}
	c.write(t, htRequest("GET / HTTP/1.1", htBaseHeaders...))
	c.readUpgrade(t)

	msg := htAppendMasked(nil, codec.OpBinary, true, bytes.Repeat([]byte("s"), 32<<10))
	const maxSends = 4096 // 128 MiB: far more than any loopback socket buffers
	sent := 0
	var werr error
	for ; sent < maxSends; sent++ {
		_ = nc.SetWriteDeadline(time.Now().Add(htSlack))
		if _, werr = nc.Write(msg); werr != nil {
			break
		}
	}
	if werr == nil {
		t.Fatalf("server still took writes after %d unread 32 KiB echoes", sent)
	}
	if !htIsClosed(werr) && !errors.Is(werr, syscall.EPIPE) {
		t.Fatalf("write %d: %v, want a reset or a broken pipe", sent, werr)
	}
	// The kernel buffers far more than the server reads before it gives up, so this
	// count says little about when the server gave up.
	t.Logf("%d writes of 32 KiB succeeded before %v", sent, werr)

	// Drain what the kernel still holds: echoes, then perhaps the close frame.
	var code codec.CloseCode
	for {
		f, err := c.readFrame(htSlack)
		if err != nil {
			if !htIsClosed(err) {
				t.Fatalf("reading after the server gave up: %v", err)
			}
			break
		}
		if f.op == codec.OpClose {
			code, _ = htParseClose(f.payload)
		}
	}
	if code != 0 && code != row.wantCode {
		t.Errorf("close code = %d, want %d", code, row.wantCode)
	}
}

// ---- Helpers shared by hostile_test.go, conformance_test.go, sockfuzz_test.go and
// leakall_test.go.

// htSlack bounds every wait for the server: the tests run with -race on two cores next to
// other test binaries, where a 10 ms tick can be very late.
const htSlack = 10 * time.Second

// htRunning fails the test when s's Run has returned (a crashed engine ends Run early).
func htRunning(t testing.TB, s *servertest.Server) {
	t.Helper()
	select {
	case <-s.Done():
		t.Fatalf("Run returned %v while the server should be serving", s.Wait(0))
	default:
	}
}

// htHTTP talks to the admin listener without keep-alives, so no idle connection goroutine
// outlives a request (several tests count goroutines).
var htHTTP = &http.Client{Timeout: htSlack, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

// htGet fetches an admin path of s and returns the status and body.
func htGet(t testing.TB, s *servertest.Server, path string) (int, []byte) {
	t.Helper()
	resp, err := htHTTP.Get(s.Admin + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", path, err)
	}
	return resp.StatusCode, body
}

func htCloseSeries(code codec.CloseCode) string {
	return `ws_close_total{code="` + strconv.Itoa(int(code)) + `"}`
}

func htUpgradeSeries(reason string) string {
	return `ws_upgrade_failures_total{reason="` + reason + `"}`
}

// htKey is RFC 6455 §1.3's sample key; htAccept is its Sec-WebSocket-Accept.
const (
	htKey    = "dGhlIHNhbXBsZSBub25jZQ=="
	htAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
)

// htBaseHeaders are the header lines of a valid upgrade request (Host is added by
// htRequest).
var htBaseHeaders = []string{
	"Upgrade: websocket",
	"Connection: Upgrade",
	"Sec-WebSocket-Key: " + htKey,
	"Sec-WebSocket-Version: 13",
}

// htWithout returns htBaseHeaders without the named header ("" keeps them all).
func htWithout(name string) []string {
	var out []string
	for _, h := range htBaseHeaders {
		if name == "" || !strings.HasPrefix(h, name+":") {
			out = append(out, h)
		}
	}
	return out
}

// htReplace returns htBaseHeaders with the named header's value replaced.
func htReplace(name, value string) []string {
	return append(htWithout(name), name+": "+value)
}

// htRequest builds a request head: the request line, a Host header, the given lines.
func htRequest(requestLine string, headers ...string) []byte {
	var b strings.Builder
	b.WriteString(requestLine + "\r\nHost: wsreactor.test\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// htMaskSeq varies the masking key between frames, so unmasking is tested with many keys.
var htMaskSeq atomic.Uint32

// htAppendMasked appends a masked client frame (RFC 6455 §5.3) to dst.
func htAppendMasked(dst []byte, op codec.OpCode, fin bool, payload []byte) []byte {
	var mask [4]byte
	binary.BigEndian.PutUint32(mask[:], htMaskSeq.Add(0x9E3779B9)|0x01000001)
	return codec.AppendClientFrame(dst, op, fin, payload, mask)
}

// htMasked returns a masked client frame.
func htMasked(op codec.OpCode, fin bool, payload []byte) []byte {
	return htAppendMasked(nil, op, fin, payload)
}

// htRSV returns frame with RSV bits (0x40 RSV1, 0x20 RSV2, 0x10 RSV3) set.
func htRSV(frame []byte, bits byte) []byte {
	frame[0] |= bits
	return frame
}

func htCat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// htClosePayload is a close frame payload: the code, then the reason (RFC 6455 §5.5.1).
func htClosePayload(code codec.CloseCode, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

// htParseClose returns a close payload's code (1005 when empty) and reason.
func htParseClose(p []byte) (codec.CloseCode, string) {
	if len(p) < 2 {
		return codec.CloseNoStatus, ""
	}
	return codec.CloseCode(binary.BigEndian.Uint16(p)), string(p[2:])
}

// htFrame is one frame as it crossed the wire.
type htFrame struct {
	fin     bool
	rsv     byte // the three RSV bits, RSV1 highest
	op      codec.OpCode
	masked  bool
	payload []byte // unmasked
	raw     []byte // the frame's bytes exactly as received
}

// htReadFrame reads one frame from r, refusing payloads over maxPayload.
func htReadFrame(r io.Reader, maxPayload uint64) (f htFrame, err error) {
	var h [14]byte
	if _, err := io.ReadFull(r, h[:2]); err != nil {
		return f, err
	}
	f.fin, f.rsv, f.op, f.masked = h[0]&0x80 != 0, h[0]>>4&7, codec.OpCode(h[0]&0x0F), h[1]&0x80 != 0
	n, hl := uint64(h[1]&0x7F), 2
	switch n {
	case 126:
		hl = 4
	case 127:
		hl = 10
	}
	if f.masked {
		hl += 4
	}
	if _, err := io.ReadFull(r, h[2:hl]); err != nil {
		return f, fmt.Errorf("frame header: %w", err)
	}
	switch n {
	case 126:
		n = uint64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		n = binary.BigEndian.Uint64(h[2:])
	}
	if n > maxPayload {
		return f, fmt.Errorf("frame header %x announces %d bytes, over %d", h[:hl], n, maxPayload)
	}
	f.raw = make([]byte, hl+int(n))
	copy(f.raw, h[:hl])
	if _, err := io.ReadFull(r, f.raw[hl:]); err != nil {
		return f, fmt.Errorf("frame payload: %w", err)
	}
	f.payload = bytes.Clone(f.raw[hl:])
	if f.masked {
		for i := range f.payload {
			f.payload[i] ^= h[hl-4+i%4]
		}
	}
	return f, nil
}

// htCheckServerFrame reports how f breaks RFC 6455 as a server frame, or nil.
func htCheckServerFrame(f htFrame) error {
	switch {
	case f.masked:
		return errors.New("server frame is masked (RFC 6455 §5.1)")
	case f.rsv != 0:
		return fmt.Errorf("server frame has RSV bits %03b", f.rsv)
	}
	switch f.op {
	case codec.OpContinuation, codec.OpText, codec.OpBinary:
	case codec.OpClose, codec.OpPing, codec.OpPong:
		if !f.fin || len(f.payload) > codec.MaxControlPayload {
			return fmt.Errorf("control frame %d: fin %v, %d bytes", f.op, f.fin, len(f.payload))
		}
		if f.op == codec.OpClose {
			if _, _, err := codec.ParseClose(f.payload); err != nil {
				return fmt.Errorf("server close payload %x: %w", f.payload, err)
			}
		}
	default:
		return fmt.Errorf("server frame with reserved opcode %d", f.op)
	}
	return nil
}

// htConn is a hand-driven client connection.
type htConn struct {
	nc net.Conn
	br *bufio.Reader
}

// htDial opens a TCP connection and registers its Close as a cleanup.
func htDial(t testing.TB, addr string) *htConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, htSlack)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &htConn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}
}

// htDialSmallRcvBuf dials with SO_RCVBUF set before connecting, so the receive window
// stays small (a client that cannot keep up).
func htDialSmallRcvBuf(t testing.TB, addr string, size int) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: htSlack, Control: htSetRcvBuf(size)}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return nc
}

// htUpgrade dials addr and completes a valid handshake by hand.
func htUpgrade(t testing.TB, addr string) *htConn {
	t.Helper()
	c := htDial(t, addr)
	c.write(t, htRequest("GET / HTTP/1.1", htBaseHeaders...))
	c.readUpgrade(t)
	return c
}

// write writes b in one call or fails the test.
func (c *htConn) write(t testing.TB, b []byte) {
	t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(htSlack))
	if _, err := c.nc.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// readUpgrade reads the response to a valid upgrade request and checks the 101.
func (c *htConn) readUpgrade(t testing.TB) {
	t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(htSlack))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("reading the upgrade response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("upgrade status = %d (%q), want 101", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != htAccept {
		t.Fatalf("Sec-WebSocket-Accept = %q, want %q", got, htAccept)
	}
}

// readFrame reads one server frame within d and checks that it is a valid server frame.
func (c *htConn) readFrame(d time.Duration) (htFrame, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(max(d, time.Millisecond)))
	f, err := htReadFrame(c.br, 64<<20)
	if err != nil {
		return f, err
	}
	return f, htCheckServerFrame(f)
}

// expectEOF waits at most d for the server to end the connection; any byte first is an error.
func (c *htConn) expectEOF(d time.Duration) error {
	_ = c.nc.SetReadDeadline(time.Now().Add(max(d, time.Millisecond)))
	var b [64]byte
	n, err := c.br.Read(b[:])
	switch {
	case n > 0:
		return fmt.Errorf("got %q, want EOF", b[:n])
	case htIsClosed(err):
		return nil
	}
	return fmt.Errorf("want EOF, got %v", err)
}

// htCloseResult is what readClose saw.
type htCloseResult struct {
	code  codec.CloseCode // the close frame's code; 1005 for an empty payload
	data  int             // data frames before it
	pongs int             // pongs before it
}

// readClose reads frames until the server's close frame, within d, then requires the end of
// the connection. Data frames, pongs and pings before the close are counted or skipped.
func (c *htConn) readClose(d time.Duration) (res htCloseResult, err error) {
	deadline := time.Now().Add(d)
	for {
		f, err := c.readFrame(time.Until(deadline))
		if err != nil {
			return res, fmt.Errorf("no close frame: %w", err)
		}
		switch f.op {
		case codec.OpClose:
			res.code, _ = htParseClose(f.payload)
			return res, c.expectEOF(time.Until(deadline))
		case codec.OpPong:
			res.pongs++
		case codec.OpPing:
		default:
			res.data++
		}
	}
}

// htIsClosed reports whether err means the peer ended the TCP connection.
func htIsClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// htDialGorilla connects a gorilla client, which ignores close frames' handler echo so a
// close handshake ends exactly as the server ends it.
func htDialGorilla(t testing.TB, s *servertest.Server) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: htSlack}
	c, resp, err := d.Dial("ws://"+s.Addr+"/", nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("gorilla dial: %v (status %d)", err, status)
	}
	c.SetCloseHandler(func(int, string) error { return nil })
	return c
}

// htGorillaEcho sends msg as text through c and checks the echo.
func htGorillaEcho(t testing.TB, c *websocket.Conn, msg string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(htSlack))
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatalf("gorilla write: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(htSlack))
	op, got, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("gorilla read: %v", err)
	}
	if op != websocket.TextMessage || string(got) != msg {
		t.Fatalf("echo = type %d %q, want text %q", op, got, msg)
	}
}

// htGorillaClose runs a clean close handshake from c (1000) and waits for the server to end
// the TCP connection, so the close is counted when it returns.
func htGorillaClose(t testing.TB, c *websocket.Conn) {
	t.Helper()
	defer c.Close()
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	if err := c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(htSlack)); err != nil {
		t.Errorf("gorilla close: %v", err)
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(htSlack))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
			t.Errorf("gorilla close: %v, want the echo of 1000", err)
			return
		}
		break
	}
	nc := c.NetConn()
	_ = nc.SetReadDeadline(time.Now().Add(htSlack))
	if n, err := nc.Read(make([]byte, 1)); n != 0 || !htIsClosed(err) {
		t.Errorf("after the close handshake: %d bytes, %v; want EOF", n, err)
	}
}

// htHealthyEcho checks that a fresh gorilla client connects, echoes and closes cleanly.
func htHealthyEcho(t testing.TB, s *servertest.Server) {
	t.Helper()
	c := htDialGorilla(t, s)
	htGorillaEcho(t, c, "healthy")
	htGorillaClose(t, c)
}
