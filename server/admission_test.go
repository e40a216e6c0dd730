package server_test

// This file holds the admission tests (origin and capacity) and, below them, the hd*
// helpers shared by the hardening tests: admission_test.go, auth_test.go,
// ratelimit_test.go, backpressure_test.go and drain_test.go. They are prefixed so they
// never collide with the helpers of the other test files in this package.

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// TestAdmissionOrigin checks -allowed-origins: a browser from another origin gets 403
// (counted as reason "origin"), an allowed origin (compared case-insensitively) and a
// request without Origin (a non-browser client) are upgraded.
func TestAdmissionOrigin(t *testing.T) {
	hs := servertest.Start(t, server.Options{App: server.AppPubSub, AllowedOrigins: []string{"https://good.example"}})
	tests := []struct {
		name       string
		headers    []string
		wantStatus int
	}{
		{name: "other origin", headers: []string{"Origin: https://evil.example"}, wantStatus: http.StatusForbidden},
		{name: "allowed origin's subdomain", headers: []string{"Origin: https://sub.good.example"}, wantStatus: http.StatusForbidden},
		{name: "allowed origin on another scheme", headers: []string{"Origin: http://good.example"}, wantStatus: http.StatusForbidden},
		{name: "allowed origin", headers: []string{"Origin: https://good.example"}, wantStatus: http.StatusSwitchingProtocols},
		{name: "allowed origin in upper case", headers: []string{"Origin: HTTPS://GOOD.EXAMPLE"}, wantStatus: http.StatusSwitchingProtocols},
		{name: "no origin", headers: nil, wantStatus: http.StatusSwitchingProtocols},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := hs.Metric(t, hdUpgradeSeries("origin"))
			c, resp, err := hdUpgrade(t, nil, hs.Addr, "/", tt.headers...)
			if err != nil {
				t.Fatalf("upgrade: %v", err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			wantFailures := before
			if tt.wantStatus == http.StatusSwitchingProtocols {
				// The connection works: the pub/sub app greets it.
				if m, err := c.readMsg(10 * time.Second); err != nil || m.Type != "welcome" {
					t.Fatalf("first message = %+v, %v; want welcome", m, err)
				}
			} else {
				wantFailures++
			}
			if got := hs.Metric(t, hdUpgradeSeries("origin")); got != wantFailures {
				t.Errorf("%s = %v, want %v", hdUpgradeSeries("origin"), got, wantFailures)
			}
		})
	}
}

// TestAdmissionCapacity checks -max-connections: over the limit an upgrade gets 503 with
// Retry-After (reason "capacity"), and once a connection leaves a new one is admitted.
func TestAdmissionCapacity(t *testing.T) {
	const limit = 5
	hs := servertest.Start(t, server.Options{App: server.AppPubSub, MaxConnections: limit})
	conns := make([]*hdConn, 0, limit)
	for i := range limit {
		c := hdMustUpgrade(t, hs.Addr, "/")
		if m, err := c.readMsg(10 * time.Second); err != nil || m.Type != "welcome" {
			t.Fatalf("client %d: first message = %+v, %v; want welcome", i, m, err)
		}
		conns = append(conns, c)
	}
	if got := hs.Metric(t, "ws_connections_active"); got != limit {
		t.Fatalf("ws_connections_active = %v after %d upgrades, want %d", got, limit, limit)
	}

	tests := []struct {
		name    string
		headers []string
	}{
		{name: "plain client"},
		// Capacity is checked whatever the request carries.
		{name: "client with an id", headers: []string{"X-Client-Id: late"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := hs.Metric(t, hdUpgradeSeries("capacity"))
			_, resp, err := hdUpgrade(t, nil, hs.Addr, "/", tt.headers...)
			if err != nil {
				t.Fatalf("upgrade: %v", err)
			}
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("status = %d, want 503", resp.StatusCode)
			}
			ra := resp.Header.Get("Retry-After")
			if secs, err := strconv.Atoi(ra); err != nil || secs < 1 {
				t.Errorf("Retry-After = %q, want a positive number of seconds", ra)
			}
			if got := hs.Metric(t, hdUpgradeSeries("capacity")); got != before+1 {
				t.Errorf("%s = %v, want %v", hdUpgradeSeries("capacity"), got, before+1)
			}
		})
	}

	// One client leaves (a clean close); a new client gets in once the server has seen it.
	if err := conns[0].sendClose(codec.CloseNormal); err != nil {
		t.Fatalf("close: %v", err)
	}
	var last string
	eventually(t, 15*time.Second, func() bool {
		c, resp, err := hdUpgrade(t, nil, hs.Addr, "/")
		if err != nil {
			last = err.Error()
			return false
		}
		last = resp.Status
		return c != nil
	}, func() string { return "no upgrade succeeded after a client left; last: " + last })
	// The loop counts a socket active before its 101 is written, so the gauge is exact
	// once the client has read the 101.
	if got := hs.Metric(t, "ws_connections_active"); got != limit {
		t.Errorf("ws_connections_active = %v, want %d", got, limit)
	}
}

// A burst of upgrades spread over several loops gets exactly MaxConnections 101s: the
// loops reserve places before writing the 101, so none admits past the limit.
func TestAdmissionCapacityBurst(t *testing.T) {
	const limit, clients = 8, 64
	hs := servertest.Start(t, server.Options{App: server.AppEcho, MaxConnections: limit, Loops: 4})
	var (
		mu       sync.Mutex
		upgraded []*hdConn
		statuses = map[int]int{}
	)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			<-start
			c, resp, err := hdUpgrade(t, nil, hs.Addr, "/")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Errorf("upgrade: %v", err)
			case c != nil:
				upgraded = append(upgraded, c)
			default:
				statuses[resp.StatusCode]++
			}
		})
	}
	close(start)
	wg.Wait()
	if len(upgraded) != limit || statuses[http.StatusServiceUnavailable] != clients-limit {
		t.Errorf("%d upgraded, statuses %v; want %d upgraded and %d refused with 503",
			len(upgraded), statuses, limit, clients-limit)
	}
	if got := hs.Metric(t, "ws_connections_active"); got != limit {
		t.Errorf("ws_connections_active = %v, want %d", got, limit)
	}
	if got := hs.Metric(t, hdUpgradeSeries("capacity")); got != clients-limit {
		t.Errorf("%s = %v, want %d", hdUpgradeSeries("capacity"), got, clients-limit)
	}
}

// ---- hd helpers ----

// hdSlack is added to every "within X" bound: these tests run under -race on a two-core
// machine next to other test processes, where a 10 ms timer tick can be late by seconds.
const hdSlack = 3 * time.Second

// hdCloseSeries and hdUpgradeSeries name the labelled series of DESIGN.md's metrics.
func hdCloseSeries(code codec.CloseCode) string {
	return `ws_close_total{code="` + strconv.Itoa(int(code)) + `"}`
}

func hdUpgradeSeries(reason string) string {
	return `ws_upgrade_failures_total{reason="` + reason + `"}`
}

// hdKey is a valid Sec-WebSocket-Key (RFC 6455 §1.3's sample nonce).
const hdKey = "dGhlIHNhbXBsZSBub25jZQ=="

// hdUpgradeRequest is a valid upgrade request for target on host, plus extra header
// lines ("Name: value").
func hdUpgradeRequest(host, target string, headers ...string) []byte {
	var b strings.Builder
	b.WriteString("GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n")
	b.WriteString("Upgrade: websocket\r\nConnection: Upgrade\r\n")
	b.WriteString("Sec-WebSocket-Key: " + hdKey + "\r\nSec-WebSocket-Version: 13\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// hdConn is a hand-driven WebSocket client over a real TCP connection: requests are
// written byte for byte and server frames are parsed here, so a test sees exactly what
// crossed the wire. Not safe for concurrent use, except that writes may overlap reads.
type hdConn struct {
	net.Conn
	br  *bufio.Reader
	buf []byte // payload scratch for readFrame
}

// hdUpgrade dials addr (with d, or a plain dialer when nil), sends an upgrade request for
// target with the extra headers and reads the response. On 101 it returns the open
// connection (closed by a test cleanup); on any other status it returns the response with
// its body read and the connection closed. err is for transport failures only.
func hdUpgrade(t testing.TB, d *net.Dialer, addr, target string, headers ...string) (*hdConn, *http.Response, error) {
	if d == nil {
		d = &net.Dialer{Timeout: 10 * time.Second}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	c := &hdConn{Conn: nc, br: bufio.NewReaderSize(nc, 4096)}
	_ = nc.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := nc.Write(hdUpgradeRequest(addr, target, headers...)); err != nil {
		nc.Close()
		return nil, nil, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("reading the upgrade response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		nc.Close()
		return nil, resp, nil
	}
	_ = nc.SetDeadline(time.Time{})
	if t != nil {
		t.Cleanup(func() { _ = nc.Close() })
	}
	return c, resp, nil
}

// hdMustUpgrade is hdUpgrade that fails the test unless the server answers 101.
func hdMustUpgrade(t testing.TB, addr, target string, headers ...string) *hdConn {
	t.Helper()
	c, resp, err := hdUpgrade(t, nil, addr, target, headers...)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if c == nil {
		t.Fatalf("upgrade status = %s, want 101", resp.Status)
	}
	return c
}

// hdFrame is one server frame. payload aliases the connection's scratch buffer and is
// valid until the next readFrame.
type hdFrame struct {
	op      codec.OpCode
	fin     bool
	payload []byte
}

// readFrame reads one frame under whatever read deadline is set. Server frames must not
// be masked (RFC 6455 §5.1).
func (c *hdConn) readFrame() (hdFrame, error) {
	var h [8]byte
	if _, err := io.ReadFull(c.br, h[:2]); err != nil {
		return hdFrame{}, err
	}
	f := hdFrame{op: codec.OpCode(h[0] & 0x0f), fin: h[0]&0x80 != 0}
	if h[1]&0x80 != 0 {
		return f, errors.New("server frame is masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(c.br, h[:2]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(h[:2]))
	case 127:
		if _, err := io.ReadFull(c.br, h[:8]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(h[:8])
	}
	if n > 16<<20 {
		return f, fmt.Errorf("frame of %d bytes", n)
	}
	if uint64(cap(c.buf)) < n {
		c.buf = make([]byte, n)
	}
	f.payload = c.buf[:n]
	if _, err := io.ReadFull(c.br, f.payload); err != nil {
		return f, err
	}
	return f, nil
}

// hdCloseError is a close frame where a data message was expected.
type hdCloseError struct {
	code   codec.CloseCode
	reason string
}

func (e *hdCloseError) Error() string { return fmt.Sprintf("close frame %d %q", e.code, e.reason) }

// hdParseClose splits a close payload; an empty one is 1005 (RFC 6455 §7.1.5).
func hdParseClose(p []byte) *hdCloseError {
	if len(p) < 2 {
		return &hdCloseError{code: codec.CloseNoStatus}
	}
	return &hdCloseError{code: codec.CloseCode(binary.BigEndian.Uint16(p)), reason: string(p[2:])}
}

// hdMsg is any pub/sub envelope the server sends (DESIGN.md's wire protocol).
type hdMsg struct {
	Type          string          `json:"type"`
	ClientID      string          `json:"clientId"`
	Node          string          `json:"node"`
	Channel       string          `json:"channel"`
	Code          string          `json:"code"`
	Message       string          `json:"message"`
	ReconnectInMs *int64          `json:"reconnectInMs"`
	Data          json.RawMessage `json:"data"`
}

// readMsg reads the next text message within d, answering pings. A close frame ends it
// with an *hdCloseError.
func (c *hdConn) readMsg(d time.Duration) (hdMsg, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	for {
		f, err := c.readFrame()
		if err != nil {
			return hdMsg{}, err
		}
		switch f.op {
		case codec.OpPing:
			if err := c.send(codec.OpPong, f.payload); err != nil {
				return hdMsg{}, err
			}
		case codec.OpPong:
		case codec.OpClose:
			return hdMsg{}, hdParseClose(f.payload)
		case codec.OpText:
			if !f.fin {
				return hdMsg{}, errors.New("fragmented server message")
			}
			var m hdMsg
			if err := json.Unmarshal(f.payload, &m); err != nil {
				return hdMsg{}, fmt.Errorf("message %q: %w", f.payload, err)
			}
			return m, nil
		default:
			return hdMsg{}, fmt.Errorf("unexpected opcode %v", f.op)
		}
	}
}

// send writes one masked client frame.
func (c *hdConn) send(op codec.OpCode, payload []byte) error {
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Write(codec.AppendClientFrame(nil, op, true, payload, mask))
	return err
}

// sendJSON writes one text message.
func (c *hdConn) sendJSON(msg string) error { return c.send(codec.OpText, []byte(msg)) }

// sendClose writes a close frame with code.
func (c *hdConn) sendClose(code codec.CloseCode) error {
	return c.send(codec.OpClose, binary.BigEndian.AppendUint16(nil, uint16(code)))
}

// subscribe subscribes to channel and waits for the confirmation.
func (c *hdConn) subscribe(channel string) error {
	if err := c.sendJSON(`{"op":"sub","channel":"` + channel + `"}`); err != nil {
		return err
	}
	m, err := c.readMsg(15 * time.Second)
	if err != nil {
		return err
	}
	if m.Type != "subscribed" || m.Channel != channel {
		return fmt.Errorf("answer to sub %s: %+v", channel, m)
	}
	return nil
}

// expectEnd waits at most d for the server to end the TCP connection, discarding what
// arrives first; it returns the close frame among those bytes, if one was complete.
func (c *hdConn) expectEnd(d time.Duration) (*hdCloseError, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	var closeFrame *hdCloseError
	for {
		f, err := c.readFrame()
		if err != nil {
			if hdIsEnd(err) {
				return closeFrame, nil
			}
			return closeFrame, err
		}
		if f.op == codec.OpClose {
			closeFrame = hdParseClose(f.payload)
		}
	}
}

// hdIsEnd reports whether err means the peer ended the TCP connection: EOF, also in the
// middle of a frame, or a reset.
func hdIsEnd(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
