package server_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// slack is added to every "within X" assertion: the tests run under -race on small CI
// machines next to other packages, where a 10 ms wheel tick can be late by far more.
const slack = 3 * time.Second

// eventually polls cond every 5 ms until it holds or d passes, then fails the test with
// the message built by msg (called once, at the end, so it can report the last state).
func eventually(t testing.TB, d time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", d, msg())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// httpClient talks to the admin listener. Keep-alives are off so no idle connection
// goroutines outlive a request (the leak test counts goroutines).
var httpClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

// closeSeries is the ws_close_total series for code.
func closeSeries(code string) string { return `ws_close_total{code="` + code + `"}` }

// upgradeSeries is the ws_upgrade_failures_total series for reason.
func upgradeSeries(reason string) string { return `ws_upgrade_failures_total{reason="` + reason + `"}` }

// upgradeReasons is DESIGN.md's closed set of ws_upgrade_failures_total reasons.
var upgradeReasons = []string{"bad_request", "method", "version", "too_large", "timeout", "auth", "origin", "capacity"}

// dialer is a gorilla dialer that never goes through a proxy.
var dialer = &websocket.Dialer{HandshakeTimeout: 10 * time.Second}

// dialGorilla connects a gorilla client and registers its Close as a cleanup.
func dialGorilla(t testing.TB, ts *servertest.Server) *websocket.Conn {
	t.Helper()
	c, resp, err := dialer.Dial(ts.URL, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP status %d)", ts.URL, err, status)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// assertEcho sends one message through c and checks that it comes back unchanged.
func assertEcho(t testing.TB, c *websocket.Conn, op int, payload []byte) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := c.WriteMessage(op, payload); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	gotOp, got, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if gotOp != op || !bytes.Equal(got, payload) {
		t.Fatalf("echo = type %d, %d bytes; want type %d, %d bytes (first difference at %d)",
			gotOp, len(got), op, len(payload), firstDiff(got, payload))
	}
	_ = c.SetReadDeadline(time.Time{})
	_ = c.SetWriteDeadline(time.Time{})
}

// healthyEcho checks that a fresh gorilla client still gets an echo from ts.
func healthyEcho(t testing.TB, ts *servertest.Server) {
	t.Helper()
	c := dialGorilla(t, ts)
	assertEcho(t, c, websocket.TextMessage, []byte("still alive"))
	_ = c.Close()
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) == len(b) {
		return -1
	}
	return min(len(a), len(b))
}

// testKey is a valid Sec-WebSocket-Key (RFC 6455 §1.3's sample nonce).
const testKey = "dGhlIHNhbXBsZSBub25jZQ=="

// upgradeRequest returns a valid upgrade request for host with testKey.
func upgradeRequest(host string) string {
	return "GET / HTTP/1.1\r\n" +
		"Host: " + host + "\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + testKey + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"\r\n"
}

// expectedAccept is Sec-WebSocket-Accept for key (RFC 6455 §4.2.2).
func expectedAccept(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// rawConn is a hand-driven client: bytes are written as given and server frames are
// read one at a time, so a test controls exactly what crosses the wire.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

// dialRaw opens a TCP connection to ts without any handshake.
func dialRaw(t testing.TB, ts *servertest.Server) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", ts.Addr, 10*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &rawConn{Conn: nc, br: bufio.NewReader(nc)}
}

// write writes b or fails the test.
func (rc *rawConn) write(t testing.TB, b []byte) {
	t.Helper()
	_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := rc.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// readUpgrade reads the server's answer to a valid upgrade request and checks the 101.
func (rc *rawConn) readUpgrade(t testing.TB) {
	t.Helper()
	_ = rc.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatalf("reading the upgrade response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("upgrade status = %d (%s), want 101", resp.StatusCode, body)
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), expectedAccept(testKey); got != want {
		t.Fatalf("Sec-WebSocket-Accept = %q, want %q", got, want)
	}
	_ = rc.SetReadDeadline(time.Time{})
}

// upgradeRaw dials ts and completes a handshake by hand.
func upgradeRaw(t testing.TB, ts *servertest.Server) *rawConn {
	t.Helper()
	rc := dialRaw(t, ts)
	rc.write(t, []byte(upgradeRequest(ts.Addr)))
	rc.readUpgrade(t)
	return rc
}

// readFrame reads one server frame within d. Server frames must not be masked
// (RFC 6455 §5.1); a masked one is returned as an error.
func (rc *rawConn) readFrame(d time.Duration) (ws.Frame, error) {
	_ = rc.SetReadDeadline(time.Now().Add(d))
	f, err := ws.ReadFrame(rc.br)
	if err != nil {
		return f, err
	}
	if f.Header.Masked {
		return f, errors.New("server frame is masked")
	}
	return f, nil
}

// readMessage reads one data message within d, reassembling fragments and skipping the
// server's pings (which it counts in pings, when non-nil).
func (rc *rawConn) readMessage(d time.Duration, pings *int) (ws.OpCode, []byte, error) {
	deadline := time.Now().Add(d)
	var op ws.OpCode
	var msg []byte
	for {
		f, err := rc.readFrame(time.Until(deadline))
		if err != nil {
			return 0, nil, err
		}
		switch f.Header.OpCode {
		case ws.OpPing:
			if pings != nil {
				*pings++
			}
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			code, reason := parseClosePayload(f.Payload)
			return ws.OpClose, nil, fmt.Errorf("close frame %d %q", code, reason)
		case ws.OpContinuation:
			if op == 0 {
				return 0, nil, errors.New("continuation without a message")
			}
		default:
			if op != 0 {
				return 0, nil, fmt.Errorf("opcode %v inside a fragmented message", f.Header.OpCode)
			}
			op = f.Header.OpCode
		}
		msg = append(msg, f.Payload...)
		if f.Header.Fin {
			if msg == nil {
				msg = []byte{}
			}
			return op, msg, nil
		}
	}
}

// closeResult is what a client saw at the end of a connection.
type closeResult struct {
	gotClose bool            // a close frame arrived
	code     codec.CloseCode // its code (1005 for an empty payload)
	reason   string
	eof      bool          // the TCP connection then ended (EOF or reset)
	after    time.Duration // since readClose was called, when the connection ended
	frames   []ws.OpCode   // other frames seen before the close frame
}

// readClose reads frames for at most d, skipping data and pings, until the server's
// close frame and then the end of the TCP connection.
func (rc *rawConn) readClose(d time.Duration) (closeResult, error) {
	start := time.Now()
	deadline := start.Add(d)
	var res closeResult
	for !res.gotClose {
		f, err := rc.readFrame(time.Until(deadline))
		if err != nil {
			if isClosedErr(err) {
				res.eof = true
				res.after = time.Since(start)
				return res, nil
			}
			return res, err
		}
		if f.Header.OpCode != ws.OpClose {
			res.frames = append(res.frames, f.Header.OpCode)
			continue
		}
		res.gotClose = true
		res.code, res.reason = parseClosePayload(f.Payload)
	}
	err := rc.expectEOF(time.Until(deadline))
	res.after = time.Since(start)
	if err != nil {
		return res, err
	}
	res.eof = true
	return res, nil
}

// expectEOF waits at most d for the server to end the TCP connection, failing on any
// byte that arrives first.
func (rc *rawConn) expectEOF(d time.Duration) error {
	_ = rc.SetReadDeadline(time.Now().Add(max(d, time.Millisecond)))
	var b [1]byte
	n, err := rc.br.Read(b[:])
	if n > 0 {
		return fmt.Errorf("byte %#x after the end of the exchange, want EOF", b[0])
	}
	if isClosedErr(err) {
		return nil
	}
	return fmt.Errorf("want EOF, got %v", err)
}

// isClosedErr reports whether err means the peer ended the TCP connection: EOF, or a
// reset when the kernel answered bytes that arrived after the close.
func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

func parseClosePayload(p []byte) (codec.CloseCode, string) {
	if len(p) < 2 {
		return codec.CloseNoStatus, ""
	}
	return codec.CloseCode(binary.BigEndian.Uint16(p)), string(p[2:])
}

// clientFrame encodes a masked client frame with a random mask.
func clientFrame(op codec.OpCode, fin bool, payload []byte) []byte {
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	return codec.AppendClientFrame(nil, op, fin, payload, mask)
}

// closePayload is a close frame payload: code then reason (RFC 6455 §5.5.1).
func closePayload(code codec.CloseCode, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

// textPayload returns n bytes of valid UTF-8 that mixes 1-, 2-, 3- and 4-byte runes, so a
// split at any byte offset may fall inside a rune.
func textPayload(n int) []byte {
	const pattern = "héllo wörld ✓ 😀 "
	b := make([]byte, 0, n)
	for len(b)+len(pattern) <= n {
		b = append(b, pattern...)
	}
	for _, r := range pattern {
		if len(b)+len(string(r)) > n {
			break
		}
		b = append(b, string(r)...)
	}
	for len(b) < n {
		b = append(b, 'x')
	}
	return b
}

// binaryPayload returns n bytes that are not valid UTF-8 and cover every byte value.
func binaryPayload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}
