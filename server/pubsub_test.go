package server_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// psWait bounds every wait in the pub/sub tests: generous, because they run under -race
// on small machines next to other packages.
const psWait = 10 * time.Second

// psTraceparent is the W3C trace context specification's example.
const psTraceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

// psNode is a pub/sub node: the shared test server (helpers_test.go).
type psNode = servertest.Server

// psStartNode starts a pub/sub node with opts through startServer, which fills the other
// empty fields and registers the shutdown (checking that Run returns nil) as a cleanup.
func psStartNode(t testing.TB, opts server.Options) *psNode {
	t.Helper()
	if opts.App == "" {
		opts.App = server.AppPubSub
	}
	return servertest.Start(t, opts)
}

// psFrame is one server-to-client JSON frame.
type psFrame struct {
	Type          string          `json:"type"`
	ClientID      string          `json:"clientId"`
	Node          string          `json:"node"`
	HeartbeatMs   int64           `json:"heartbeatMs"`
	Channel       string          `json:"channel"`
	From          string          `json:"from"`
	Data          json.RawMessage `json:"data"`
	Traceparent   string          `json:"traceparent"`
	Code          string          `json:"code"`
	Message       string          `json:"message"`
	ReconnectInMs int64           `json:"reconnectInMs"`

	raw    []byte
	fields map[string]json.RawMessage
}

func (f psFrame) has(field string) bool { _, ok := f.fields[field]; return ok }

func (f psFrame) String() string { return string(f.raw) }

// psClient is a gorilla client whose frames are read by a background goroutine, so a test
// can wait for a frame with a deadline without breaking the connection.
type psClient struct {
	conn    *websocket.Conn
	welcome psFrame
	frames  chan psFrame
	quit    chan struct{}
	done    chan struct{} // closed when the reader stops; err is set before
	err     error
	wmu     sync.Mutex
	once    sync.Once
}

// psDialer never goes through a proxy.
var psDialer = &websocket.Dialer{HandshakeTimeout: psWait}

// psDialRaw dials url with hdr and returns the connection, or the error and HTTP status.
func psDialRaw(url string, hdr http.Header) (*websocket.Conn, int, error) {
	c, resp, err := psDialer.Dial(url, hdr)
	status := 0
	if resp != nil {
		status = resp.StatusCode
		if resp.Body != nil {
			_ = resp.Body.Close()
		}
	}
	return c, status, err
}

// psDial connects to n with identity id ("" for none; sent as X-Client-Id), reads the
// welcome frame, and registers the connection's close as a cleanup.
func psDial(t testing.TB, n *psNode, id string) *psClient {
	t.Helper()
	hdr := http.Header{}
	if id != "" {
		hdr.Set("X-Client-Id", id)
	}
	return psDialURL(t, n.URL, hdr)
}

// psDialURL is psDial with a full URL and headers.
func psDialURL(t testing.TB, u string, hdr http.Header) *psClient {
	t.Helper()
	conn, status, err := psDialRaw(u, hdr)
	if err != nil {
		t.Fatalf("dial %s: %v (HTTP status %d)", u, err, status)
	}
	c := &psClient{conn: conn, frames: make(chan psFrame, 1024), quit: make(chan struct{}), done: make(chan struct{})}
	go c.readLoop()
	t.Cleanup(c.close)
	c.welcome = c.expect(t, "welcome")
	return c
}

func (c *psClient) readLoop() {
	defer close(c.done)
	for {
		op, b, err := c.conn.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		if op != websocket.TextMessage {
			c.err = fmt.Errorf("server sent a non-text message (type %d): %q", op, b)
			return
		}
		f := psFrame{raw: b}
		if err := json.Unmarshal(b, &f.fields); err != nil {
			c.err = fmt.Errorf("server sent a frame that is not a JSON object: %q: %w", b, err)
			return
		}
		if err := json.Unmarshal(b, &f); err != nil {
			c.err = fmt.Errorf("server sent a frame with mistyped fields: %q: %w", b, err)
			return
		}
		select {
		case c.frames <- f:
		case <-c.quit:
			return
		}
	}
}

// close closes the connection and stops the reader. Safe to call more than once.
func (c *psClient) close() {
	c.once.Do(func() {
		close(c.quit)
		_ = c.conn.Close()
		<-c.done
	})
}

// next returns the next frame within d, or the error that ended the connection, or a
// timeout error.
func (c *psClient) next(d time.Duration) (psFrame, error) {
	select {
	case f := <-c.frames:
		return f, nil
	default:
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case f := <-c.frames:
		return f, nil
	case <-c.done:
		select {
		case f := <-c.frames:
			return f, nil
		default:
		}
		return psFrame{}, c.err
	case <-timer.C:
		return psFrame{}, fmt.Errorf("no frame within %v", d)
	}
}

// read returns the next frame or fails the test.
func (c *psClient) read(t testing.TB) psFrame {
	t.Helper()
	f, err := c.next(psWait)
	if err != nil {
		t.Fatalf("client %q: reading a frame: %v", c.welcome.ClientID, err)
	}
	return f
}

// expect reads the next frame and checks its type.
func (c *psClient) expect(t testing.TB, typ string) psFrame {
	t.Helper()
	f := c.read(t)
	if f.Type != typ {
		t.Fatalf("client %q: got frame %s, want type %q", c.welcome.ClientID, f, typ)
	}
	return f
}

// expectMessage reads the next frame and checks that it is the channel message data.
func (c *psClient) expectMessage(t testing.TB, channel, data string) psFrame {
	t.Helper()
	f := c.read(t)
	if f.Type != "message" || f.Channel != channel || string(f.Data) != data {
		t.Fatalf("client %q: got %s, want message on %q with data %s", c.welcome.ClientID, f, channel, data)
	}
	return f
}

// expectDirect reads the next frame and checks that it is a direct message with data,
// from from ("" meaning the field must be absent).
func (c *psClient) expectDirect(t testing.TB, from, data string) psFrame {
	t.Helper()
	f := c.read(t)
	if f.Type != "direct" || string(f.Data) != data || f.From != from || (from == "") == f.has("from") {
		t.Fatalf("client %q: got %s, want direct from %q with data %s", c.welcome.ClientID, f, from, data)
	}
	return f
}

// expectError reads the next frame and checks that it is an error with code.
func (c *psClient) expectError(t testing.TB, code string) psFrame {
	t.Helper()
	f := c.read(t)
	if f.Type != "error" || f.Code != code || f.Message == "" || !f.has("message") {
		t.Fatalf("client %q: got %s, want error %q with a message", c.welcome.ClientID, f, code)
	}
	return f
}

// expectNothing checks that no frame arrives within d.
func (c *psClient) expectNothing(t testing.TB, d time.Duration) {
	t.Helper()
	if f, err := c.next(d); err == nil {
		t.Fatalf("client %q: got %s, want nothing", c.welcome.ClientID, f)
	}
}

// write sends one text frame or fails the test.
func (c *psClient) write(t testing.TB, payload string) {
	t.Helper()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(psWait))
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(payload)); err != nil {
		t.Fatalf("client %q: write: %v", c.welcome.ClientID, err)
	}
}

// sub subscribes to channel and waits for "subscribed".
func (c *psClient) sub(t testing.TB, channel string) {
	t.Helper()
	c.write(t, `{"op":"sub","channel":`+strconv.Quote(channel)+`}`)
	if f := c.expect(t, "subscribed"); f.Channel != channel {
		t.Fatalf("subscribed to %q, want %q", f.Channel, channel)
	}
}

// unsub unsubscribes from channel and waits for "unsubscribed".
func (c *psClient) unsub(t testing.TB, channel string) {
	t.Helper()
	c.write(t, `{"op":"unsub","channel":`+strconv.Quote(channel)+`}`)
	if f := c.expect(t, "unsubscribed"); f.Channel != channel {
		t.Fatalf("unsubscribed from %q, want %q", f.Channel, channel)
	}
}

// pub publishes data (raw JSON) to channel from the client.
func (c *psClient) pub(t testing.TB, channel, data string) {
	t.Helper()
	c.write(t, `{"op":"pub","channel":`+strconv.Quote(channel)+`,"data":`+data+`}`)
}

// send sends data (raw JSON) to identity to from the client.
func (c *psClient) send(t testing.TB, to, data string) {
	t.Helper()
	c.write(t, `{"op":"send","to":`+strconv.Quote(to)+`,"data":`+data+`}`)
}

// psHTTP talks to admin listeners without keep-alives, so no idle connection goroutines
// outlive a request.
var psHTTP = &http.Client{Timeout: psWait, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

// psPost posts body to the admin path of n with extra headers and returns the response.
func psPost(t testing.TB, n *psNode, path, body string, hdr http.Header) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, n.Admin+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := psHTTP.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading the body: %v", path, err)
	}
	return resp.StatusCode, resp.Header, b
}

// psAccepted posts body to path on n and fails the test unless the answer is 202.
func psAccepted(t testing.TB, n *psNode, path, body string, hdr http.Header) {
	t.Helper()
	if status, _, b := psPost(t, n, path, body, hdr); status != http.StatusAccepted {
		t.Fatalf("POST %s %s = %d %s, want 202", path, body, status, b)
	}
}

// psPublish publishes data (raw JSON) to channel through n's admin API.
func psPublish(t testing.TB, n *psNode, channel, data string) {
	t.Helper()
	psAccepted(t, n, "/v1/publish", `{"channel":`+strconv.Quote(channel)+`,"data":`+data+`}`, nil)
}

// psSend sends data (raw JSON) to identity to through n's admin API.
func psSend(t testing.TB, n *psNode, to, data string) {
	t.Helper()
	psAccepted(t, n, "/v1/send", `{"to":`+strconv.Quote(to)+`,"data":`+data+`}`, nil)
}

// psMetric scrapes n's /metrics and returns the value of series (0 when absent fails).
func psMetric(t testing.TB, n *psNode, series string) float64 {
	t.Helper()
	resp, err := psHTTP.Get(n.Admin + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: bad value %q", series, v)
			}
			return f
		}
	}
	t.Fatalf("series %s missing from /metrics", series)
	return 0
}

// TestPubSubWelcome checks the welcome frame and the identity rules at upgrade: the
// X-Client-Id header, else ?client_id= (percent-decoded), else a random id; invalid
// identities get HTTP 400 before the upgrade.
func TestPubSubWelcome(t *testing.T) {
	n := psStartNode(t, server.Options{NodeID: "node-welcome", Heartbeat: 20 * time.Second})
	long := strings.Repeat("x", 200)
	tests := []struct {
		name   string
		query  string // appended to the URL after '?'
		header string // X-Client-Id; "" for none
		want   string // identity; "" means random
		status int    // non-zero: the upgrade must fail with it
	}{
		{name: "header", header: "alice", want: "alice"},
		{name: "header with spaces and unicode", header: "Alice Smith é", want: "Alice Smith é"},
		{name: "header 128 bytes", header: strings.Repeat("h", 128), want: strings.Repeat("h", 128)},
		{name: "query", query: "client_id=bob", want: "bob"},
		{name: "query percent-encoded", query: "client_id=" + url.QueryEscape("b.o/b é&x=1"), want: "b.o/b é&x=1"},
		{name: "query among others", query: "a=1&client_id=carol%40example.com&b=2", want: "carol@example.com"},
		{name: "header wins over query", query: "client_id=bob", header: "alice", want: "alice"},
		{name: "empty query value is random", query: "client_id="},
		{name: "none is random"},
		{name: "header 200 chars", header: long, status: http.StatusBadRequest},
		{name: "header 129 chars", header: long[:129], status: http.StatusBadRequest},
		{name: "query 200 chars", query: "client_id=" + long, status: http.StatusBadRequest},
		{name: "query control char", query: "client_id=a%01b", status: http.StatusBadRequest},
		{name: "query newline", query: "client_id=a%0Ab", status: http.StatusBadRequest},
		{name: "query bad escape", query: "client_id=a%zzb", status: http.StatusBadRequest},
		{name: "query invalid utf-8", query: "client_id=a%FFb", status: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := n.URL
			if tt.query != "" {
				u += "?" + tt.query
			}
			hdr := http.Header{}
			if tt.header != "" {
				hdr.Set("X-Client-Id", tt.header)
			}
			if tt.status != 0 {
				conn, status, err := psDialRaw(u, hdr)
				if err == nil {
					_ = conn.Close()
					t.Fatalf("upgrade succeeded, want HTTP %d", tt.status)
				}
				if status != tt.status {
					t.Fatalf("upgrade failed with HTTP %d (%v), want %d", status, err, tt.status)
				}
				return
			}
			c := psDialURL(t, u, hdr)
			w := c.welcome
			for _, field := range []string{"type", "clientId", "node", "heartbeatMs"} {
				if !w.has(field) {
					t.Fatalf("welcome %s lacks %q", w, field)
				}
			}
			if len(w.fields) != 4 {
				t.Fatalf("welcome %s has fields beyond type, clientId, node, heartbeatMs", w)
			}
			if w.Node != "node-welcome" || w.HeartbeatMs != 20000 {
				t.Fatalf("welcome %s: want node %q and heartbeatMs 20000", w, "node-welcome")
			}
			if tt.want != "" && w.ClientID != tt.want {
				t.Fatalf("clientId = %q, want %q", w.ClientID, tt.want)
			}
			if tt.want == "" {
				if len(w.ClientID) < 8 {
					t.Fatalf("random clientId %q is too short to be unguessable", w.ClientID)
				}
				other := psDialURL(t, u, hdr)
				if other.welcome.ClientID == w.ClientID || other.welcome.ClientID == "" {
					t.Fatalf("two random clientIds: %q and %q, want distinct", w.ClientID, other.welcome.ClientID)
				}
			}
			// The identity is the one direct sends use.
			psSend(t, n, w.ClientID, `"hi"`)
			c.expectDirect(t, "", `"hi"`)
		})
	}
}

// TestPubSubChannelFlow checks sub, admin publish (exact data, traceparent carried only
// when valid), unsub, and that nothing arrives after unsub.
func TestPubSubChannelFlow(t *testing.T) {
	n := psStartNode(t, server.Options{NodeID: "n1"})
	c := psDial(t, n, "alice")
	c.sub(t, "room:1")
	c.sub(t, "marker")
	c.sub(t, "room:1") // subscribing twice is confirmed again, and changes nothing

	tests := []struct {
		name        string
		data        string
		traceparent string // header sent; "" for none
		wantTrace   string // field expected; "" means absent
	}{
		{name: "object", data: `{"text":"hi \"there\"","n":[1,2.5,null,true]}`},
		{name: "string", data: `"plain"`},
		{name: "number", data: `-12.5e3`},
		{name: "null", data: `null`},
		{name: "unicode", data: `"héllo ✓ 😀 \u2028"`},
		{name: "with traceparent", data: `{"t":1}`, traceparent: psTraceparent, wantTrace: psTraceparent},
		{name: "upper-case traceparent dropped", data: `{"t":2}`, traceparent: strings.ToUpper(psTraceparent)},
		{name: "garbage traceparent dropped", data: `{"t":3}`, traceparent: `x","evil":"1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := http.Header{}
			if tt.traceparent != "" {
				hdr.Set("traceparent", tt.traceparent)
			}
			psAccepted(t, n, "/v1/publish", `{"channel":"room:1","data":`+tt.data+`}`, hdr)
			f := c.expectMessage(t, "room:1", tt.data)
			if f.Traceparent != tt.wantTrace || f.has("traceparent") != (tt.wantTrace != "") {
				t.Fatalf("message %s: want traceparent %q", f, tt.wantTrace)
			}
			wantFields := 3
			if tt.wantTrace != "" {
				wantFields = 4
			}
			if len(f.fields) != wantFields {
				t.Fatalf("message %s has unexpected fields", f)
			}
		})
	}

	c.unsub(t, "room:1")
	c.unsub(t, "never-subscribed") // unsubscribing from a channel not held is confirmed too
	psPublish(t, n, "room:1", `"after unsub"`)
	psPublish(t, n, "marker", `"m"`)
	c.expectMessage(t, "marker", `"m"`) // not the room:1 message

	// Resubscribing works again.
	c.sub(t, "room:1")
	psPublish(t, n, "room:1", `"back"`)
	c.expectMessage(t, "room:1", `"back"`)
}

// TestPubSubClientPub checks a client's pub: every subscriber gets one copy, the publisher
// too when subscribed, and a publisher that is not subscribed gets nothing.
func TestPubSubClientPub(t *testing.T) {
	n := psStartNode(t, server.Options{NodeID: "n1"})
	subs := []*psClient{psDial(t, n, "s1"), psDial(t, n, "s2"), psDial(t, n, "s3")}
	for _, s := range subs {
		s.sub(t, "room")
		s.sub(t, "marker")
	}
	outsider := psDial(t, n, "outsider")
	outsider.sub(t, "marker")
	outsider.sub(t, "other")

	// A subscribed publisher gets its own message too.
	subs[0].pub(t, "room", `{"from":"s1"}`)
	subs[0].pub(t, "marker", `1`)
	for _, s := range subs {
		s.expectMessage(t, "room", `{"from":"s1"}`)
		s.expectMessage(t, "marker", `1`)
	}
	outsider.expectMessage(t, "marker", `1`) // and not the room message before it
	// A publisher that is not subscribed does not; its marker, sent after on the same
	// socket, arrives first.
	outsider.pub(t, "room", `{"from":"outsider"}`)
	outsider.pub(t, "marker", `2`)
	outsider.expectMessage(t, "marker", `2`)
	for _, s := range subs {
		s.expectMessage(t, "room", `{"from":"outsider"}`)
		s.expectMessage(t, "marker", `2`)
	}
}

// TestPubSubDirect checks client send and admin send to an identity held by two
// connections (plus the sender's own identity), and that a new connection with the same
// identity never replaces the old one.
func TestPubSubDirect(t *testing.T) {
	n := psStartNode(t, server.Options{NodeID: "n1", Loops: 2})
	bob1 := psDial(t, n, "bob")
	bob2 := psDial(t, n, "bob")
	alice := psDial(t, n, "alice")
	if bob1.welcome.ClientID != "bob" || bob2.welcome.ClientID != "bob" {
		t.Fatalf("clientIds %q and %q, want bob", bob1.welcome.ClientID, bob2.welcome.ClientID)
	}

	// Client send: each of bob's connections gets one copy with from; the marker, sent
	// after on the same socket, proves there is no second copy.
	alice.send(t, "bob", `{"hi":"bob"}`)
	alice.send(t, "bob", `"marker"`)
	for _, b := range []*psClient{bob1, bob2} {
		b.expectDirect(t, "alice", `{"hi":"bob"}`)
		b.expectDirect(t, "alice", `"marker"`)
	}
	alice.expectNothing(t, 100*time.Millisecond) // the sender is not bob

	// Sending to oneself reaches the sender.
	alice.send(t, "alice", `"me"`)
	alice.expectDirect(t, "alice", `"me"`)

	// Admin send has no from; a traceparent header is carried.
	hdr := http.Header{"Traceparent": {psTraceparent}}
	psAccepted(t, n, "/v1/send", `{"to":"bob","data":[1,2,3]}`, hdr)
	psSend(t, n, "bob", `"marker2"`)
	for _, b := range []*psClient{bob1, bob2} {
		f := b.expectDirect(t, "", `[1,2,3]`)
		if f.Traceparent != psTraceparent {
			t.Fatalf("direct %s: want traceparent %q", f, psTraceparent)
		}
		b.expectDirect(t, "", `"marker2"`)
	}

	// A third connection as bob: all three get sends; none was closed.
	bob3 := psDial(t, n, "bob")
	psSend(t, n, "bob", `"three"`)
	for _, b := range []*psClient{bob1, bob2, bob3} {
		b.expectDirect(t, "", `"three"`)
	}
	// The old connections still work both ways.
	bob1.sub(t, "still-open")
	bob2.sub(t, "still-open")

	// Closing one connection leaves the others reachable.
	bob1.close()
	psSend(t, n, "bob", `"two left"`)
	bob2.expectDirect(t, "", `"two left"`)
	bob3.expectDirect(t, "", `"two left"`)

	// Nobody holds "nobody": accepted, delivered nowhere.
	psSend(t, n, "nobody", `"void"`)
	alice.expectNothing(t, 100*time.Millisecond)
}

// TestPubSubBroadcast checks that /v1/broadcast reaches every connection, subscribed or
// not, as a broadcast envelope.
func TestPubSubBroadcast(t *testing.T) {
	n := psStartNode(t, server.Options{NodeID: "n1"})
	var clients []*psClient
	for i := range 6 {
		c := psDial(t, n, "")
		if i%2 == 0 {
			c.sub(t, "room")
		}
		clients = append(clients, c)
	}
	psAccepted(t, n, "/v1/broadcast", `{"data":{"all":true}}`, http.Header{"Traceparent": {psTraceparent}})
	psAccepted(t, n, "/v1/broadcast", `{"data":"second"}`, nil)
	for _, c := range clients {
		f := c.expect(t, "broadcast")
		if string(f.Data) != `{"all":true}` || f.Traceparent != psTraceparent || len(f.fields) != 3 {
			t.Fatalf("broadcast %s: want data {\"all\":true} and the traceparent", f)
		}
		f = c.expect(t, "broadcast")
		if string(f.Data) != `"second"` || f.has("traceparent") || len(f.fields) != 2 {
			t.Fatalf("broadcast %s: want data \"second\" and no traceparent", f)
		}
	}
}

// TestPubSubBadInput sends every kind of bad client message over a real socket: each gets
// an error frame with the right code, and the connection stays usable.
func TestPubSubBadInput(t *testing.T) {
	n := psStartNode(t, server.Options{NodeID: "n1"})
	c := psDial(t, n, "bad")
	long := strings.Repeat("c", 129)
	tests := []struct {
		name    string
		payload string
		code    string
	}{
		{name: "not JSON", payload: `hello`, code: "bad_json"},
		{name: "truncated", payload: `{"op":"sub"`, code: "bad_json"},
		{name: "array", payload: `[1,2]`, code: "bad_json"},
		{name: "number", payload: `1`, code: "bad_json"},
		{name: "string", payload: `"sub"`, code: "bad_json"},
		{name: "null", payload: `null`, code: "bad_json"},
		{name: "empty text frame", payload: ``, code: "bad_json"},
		{name: "missing op", payload: `{"channel":"a"}`, code: "bad_field"},
		{name: "channel of the wrong type", payload: `{"op":"sub","channel":5}`, code: "bad_field"},
		{name: "op of the wrong type", payload: `{"op":true}`, code: "bad_field"},
		{name: "unknown op", payload: `{"op":"join","channel":"a"}`, code: "unknown_op"},
		{name: "sub without channel", payload: `{"op":"sub"}`, code: "bad_field"},
		{name: "unsub without channel", payload: `{"op":"unsub"}`, code: "bad_field"},
		{name: "pub without channel", payload: `{"op":"pub","data":1}`, code: "bad_field"},
		{name: "sub empty channel", payload: `{"op":"sub","channel":""}`, code: "bad_field"},
		{name: "channel star", payload: `{"op":"sub","channel":"a.*"}`, code: "bad_channel"},
		{name: "channel gt", payload: `{"op":"sub","channel":"a.>"}`, code: "bad_channel"},
		{name: "channel space", payload: `{"op":"sub","channel":"a b"}`, code: "bad_channel"},
		{name: "channel leading dot", payload: `{"op":"sub","channel":".a"}`, code: "bad_channel"},
		{name: "channel trailing dot", payload: `{"op":"sub","channel":"a."}`, code: "bad_channel"},
		{name: "channel doubled dot", payload: `{"op":"sub","channel":"a..b"}`, code: "bad_channel"},
		{name: "channel 129 chars", payload: `{"op":"sub","channel":"` + long + `"}`, code: "bad_channel"},
		{name: "unsub bad channel", payload: `{"op":"unsub","channel":"a*"}`, code: "bad_channel"},
		{name: "pub bad channel", payload: `{"op":"pub","channel":"a b","data":1}`, code: "bad_channel"},
		{name: "pub without data", payload: `{"op":"pub","channel":"a"}`, code: "bad_field"},
		{name: "send without data", payload: `{"op":"send","to":"x"}`, code: "bad_field"},
		{name: "send without to", payload: `{"op":"send","data":1}`, code: "bad_field"},
		{name: "send to 129 bytes", payload: `{"op":"send","to":"` + long + `","data":1}`, code: "bad_field"},
		{name: "send to control char", payload: `{"op":"send","to":"a\u0001b","data":1}`, code: "bad_field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.write(t, tt.payload)
			f := c.expectError(t, tt.code)
			if len(f.fields) != 3 {
				t.Fatalf("error frame %s: want exactly type, code and message", f)
			}
		})
	}
	// Still open and working.
	c.sub(t, "after")
	psPublish(t, n, "after", `"ok"`)
	c.expectMessage(t, "after", `"ok"`)
}

// TestPubSubBinaryFrame checks that a binary frame closes the socket with 1003.
func TestPubSubBinaryFrame(t *testing.T) {
	n := psStartNode(t, server.Options{NodeID: "n1"})
	c := psDial(t, n, "bin")
	c.wmu.Lock()
	err := c.conn.WriteMessage(websocket.BinaryMessage, []byte(`{"op":"sub","channel":"a"}`))
	c.wmu.Unlock()
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	f, err := c.next(psWait)
	if err == nil {
		t.Fatalf("got %s, want close 1003", f)
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseUnsupportedData {
		t.Fatalf("connection ended with %v, want close 1003", err)
	}
}

// TestPubSubAdminAPI checks the admin API's answers: 202, 400 with a JSON error body,
// 413 over the size limit, 401 with WWW-Authenticate without the right token.
func TestPubSubAdminAPI(t *testing.T) {
	const token = "s3cret-token"
	const maxBytes = 4096
	n := psStartNode(t, server.Options{NodeID: "n1", MaxMessageBytes: maxBytes, AdminToken: token})
	auth := http.Header{"Authorization": {"Bearer " + token}}
	bigData := `"` + strings.Repeat("x", maxBytes) + `"`                           // over the limit by the quotes
	maxData := `"` + strings.Repeat("y", maxBytes-2) + `"`                         // exactly the limit
	hugeBody := `{"channel":"a","data":"` + strings.Repeat("z", 4*maxBytes) + `"}` // body far over
	tests := []struct {
		name   string
		path   string
		auth   []string // Authorization values; nil for none
		body   string
		status int
		code   string // the JSON body's "error"; "" means not checked beyond presence
	}{
		{name: "publish no token", path: "/v1/publish", body: `{"channel":"a","data":1}`, status: 401, code: "unauthorized"},
		{name: "publish wrong token", path: "/v1/publish", auth: []string{"Bearer wrong"}, body: `{"channel":"a","data":1}`, status: 401, code: "unauthorized"},
		{name: "publish token prefix", path: "/v1/publish", auth: []string{"Bearer " + token[:5]}, body: `{"channel":"a","data":1}`, status: 401, code: "unauthorized"},
		{name: "publish token without scheme", path: "/v1/publish", auth: []string{token}, body: `{"channel":"a","data":1}`, status: 401, code: "unauthorized"},
		{name: "publish basic auth", path: "/v1/publish", auth: []string{"Basic " + token}, body: `{"channel":"a","data":1}`, status: 401, code: "unauthorized"},
		{name: "send no token", path: "/v1/send", body: `{"to":"a","data":1}`, status: 401, code: "unauthorized"},
		{name: "broadcast wrong token", path: "/v1/broadcast", auth: []string{"Bearer x"}, body: `{"data":1}`, status: 401, code: "unauthorized"},
		{name: "bad body without token is still 401", path: "/v1/publish", body: `nope`, status: 401, code: "unauthorized"},

		{name: "publish ok", path: "/v1/publish", auth: auth["Authorization"], body: `{"channel":"a","data":1}`, status: 202},
		{name: "publish ok with a lower-case scheme", path: "/v1/publish", auth: []string{"bearer " + token}, body: `{"channel":"a","data":1}`, status: 202},
		{name: "send ok", path: "/v1/send", auth: auth["Authorization"], body: `{"to":"a","data":1}`, status: 202},
		{name: "broadcast ok", path: "/v1/broadcast", auth: auth["Authorization"], body: `{"data":1}`, status: 202},
		{name: "data at the limit", path: "/v1/publish", auth: auth["Authorization"], body: `{"channel":"a","data":` + maxData + `}`, status: 202},

		{name: "publish bad JSON", path: "/v1/publish", auth: auth["Authorization"], body: `{"channel":`, status: 400, code: "bad_json"},
		{name: "publish not an object", path: "/v1/publish", auth: auth["Authorization"], body: `[1]`, status: 400, code: "bad_json"},
		{name: "publish empty body", path: "/v1/publish", auth: auth["Authorization"], body: ``, status: 400, code: "bad_json"},
		{name: "publish missing channel", path: "/v1/publish", auth: auth["Authorization"], body: `{"data":1}`, status: 400},
		{name: "publish bad channel", path: "/v1/publish", auth: auth["Authorization"], body: `{"channel":"a.*","data":1}`, status: 400, code: "bad_channel"},
		{name: "publish channel with space", path: "/v1/publish", auth: auth["Authorization"], body: `{"channel":"a b","data":1}`, status: 400, code: "bad_channel"},
		{name: "publish missing data", path: "/v1/publish", auth: auth["Authorization"], body: `{"channel":"a"}`, status: 400, code: "bad_field"},
		{name: "send missing to", path: "/v1/send", auth: auth["Authorization"], body: `{"data":1}`, status: 400, code: "bad_field"},
		{name: "send to too long", path: "/v1/send", auth: auth["Authorization"], body: `{"to":"` + strings.Repeat("t", 129) + `","data":1}`, status: 400, code: "bad_field"},
		{name: "send missing data", path: "/v1/send", auth: auth["Authorization"], body: `{"to":"a"}`, status: 400, code: "bad_field"},
		{name: "broadcast missing data", path: "/v1/broadcast", auth: auth["Authorization"], body: `{}`, status: 400, code: "bad_field"},
		{name: "broadcast bad JSON", path: "/v1/broadcast", auth: auth["Authorization"], body: `{"data":}`, status: 400, code: "bad_json"},
		// encoding/json passes invalid UTF-8 inside strings; it would reach clients as a
		// text frame they must fail.
		{name: "publish data not UTF-8", path: "/v1/publish", auth: auth["Authorization"], body: "{\"channel\":\"a\",\"data\":\"\xff\"}", status: 400, code: "bad_json"},
		{name: "send data not UTF-8", path: "/v1/send", auth: auth["Authorization"], body: "{\"to\":\"a\",\"data\":{\"k\":\"\xc0\xaf\"}}", status: 400, code: "bad_json"},
		{name: "broadcast data not UTF-8", path: "/v1/broadcast", auth: auth["Authorization"], body: "{\"data\":\"\xed\xa0\x80\"}", status: 400, code: "bad_json"},
		{name: "publish channel of the wrong type", path: "/v1/publish", auth: auth["Authorization"], body: `{"channel":5,"data":1}`, status: 400, code: "bad_field"},
		{name: "send to of the wrong type", path: "/v1/send", auth: auth["Authorization"], body: `{"to":["a"],"data":1}`, status: 400, code: "bad_field"},

		{name: "data over the limit", path: "/v1/publish", auth: auth["Authorization"], body: `{"channel":"a","data":` + bigData + `}`, status: 413},
		{name: "body far over the limit", path: "/v1/publish", auth: auth["Authorization"], body: hugeBody, status: 413},
		{name: "broadcast over the limit", path: "/v1/broadcast", auth: auth["Authorization"], body: `{"data":` + bigData + `}`, status: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := http.Header{}
			if tt.auth != nil {
				hdr["Authorization"] = tt.auth
			}
			status, h, body := psPost(t, n, tt.path, tt.body, hdr)
			if status != tt.status {
				t.Fatalf("status = %d (%s), want %d", status, body, tt.status)
			}
			if status == http.StatusUnauthorized {
				if wa := h.Get("WWW-Authenticate"); !strings.HasPrefix(wa, "Bearer") {
					t.Fatalf("WWW-Authenticate = %q, want a Bearer challenge", wa)
				}
			}
			if status == http.StatusAccepted {
				return
			}
			var e map[string]any
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("error body %q is not a JSON object: %v", body, err)
			}
			if !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
				t.Fatalf("Content-Type = %q, want application/json", h.Get("Content-Type"))
			}
			code, _ := e["error"].(string)
			if code == "" {
				t.Fatalf("error body %s has no \"error\" code", body)
			}
			if tt.code != "" && code != tt.code {
				t.Fatalf("error code = %q (%s), want %q", code, body, tt.code)
			}
		})
	}

	// What a 202 accepted with the token is delivered.
	c := psDial(t, n, "a")
	c.sub(t, "a")
	psAccepted(t, n, "/v1/publish", `{"channel":"a","data":{"ok":1}}`, auth)
	c.expectMessage(t, "a", `{"ok":1}`)
	psAccepted(t, n, "/v1/publish", `{"channel":"a","data":`+maxData+`}`, auth)
	c.expectMessage(t, "a", maxData)
}

// TestPubSubSubscriptionLimit checks that a connection may hold 1024 subscriptions and
// that the 1025th is refused with "forbidden" while the socket stays usable.
func TestPubSubSubscriptionLimit(t *testing.T) {
	const limit = 1024
	n := psStartNode(t, server.Options{NodeID: "n1"})
	c := psDial(t, n, "greedy")
	for i := range limit {
		c.write(t, fmt.Sprintf(`{"op":"sub","channel":"c%d"}`, i))
	}
	seen := make(map[string]bool, limit)
	for range limit {
		f := c.expect(t, "subscribed")
		if seen[f.Channel] {
			t.Fatalf("subscribed to %q twice", f.Channel)
		}
		seen[f.Channel] = true
	}
	c.write(t, `{"op":"sub","channel":"one-too-many"}`)
	c.expectError(t, "forbidden")

	// A channel already held is still confirmed; after an unsub there is room again.
	c.sub(t, "c0")
	c.unsub(t, "c0")
	c.sub(t, "one-too-many")
	c.write(t, `{"op":"sub","channel":"c0"}`)
	c.expectError(t, "forbidden")

	// The limit is per connection: another socket subscribes freely, and the greedy one
	// still receives.
	other := psDial(t, n, "other")
	other.sub(t, "c0")
	psPublish(t, n, "one-too-many", `"yes"`)
	c.expectMessage(t, "one-too-many", `"yes"`)
	psPublish(t, n, "c1023", `"last"`)
	c.expectMessage(t, "c1023", `"last"`)
}

// TestFanoutLagSampledOnWrite checks ws_fanout_lag_seconds is "publish to local write": a
// broadcast that reaches no socket on a loop (its only client has left) adds no sample.
func TestFanoutLagSampledOnWrite(t *testing.T) {
	n := psStartNode(t, server.Options{Loops: 1})
	gone := psDial(t, n, "gone")
	gone.close()
	n.WaitMetric(t, "ws_connections_active", 0)
	psAccepted(t, n, "/v1/broadcast", `{"data":1}`, nil)
	// A later client, then a second broadcast: a loop runs its posts in order, so once the
	// second arrives the first has run, before or after this client opened.
	c := psDial(t, n, "here")
	psAccepted(t, n, "/v1/broadcast", `{"data":2}`, nil)
	received := 0
	for {
		f := c.expect(t, "broadcast")
		received++
		if string(f.Data) == "2" {
			break
		}
	}
	n.WaitMetric(t, "ws_fanout_lag_seconds_count", float64(received))
	if got := n.Metric(t, "ws_fanout_lag_seconds_count"); got != float64(received) {
		t.Errorf("ws_fanout_lag_seconds_count = %v for %d broadcasts written, want one sample per write", got, received)
	}
}

// TestWelcomeIsFirst checks that welcome is a client's first frame even while direct
// sends to its identity and broadcasts are published as it connects: until its welcome
// a socket is held, so nothing published before can overtake it.
func TestWelcomeIsFirst(t *testing.T) {
	n := psStartNode(t, server.Options{Loops: 1})
	var stop atomic.Bool
	var wg sync.WaitGroup
	for _, req := range []struct{ path, body string }{
		{"/v1/send", `{"to":"bob","data":1}`},
		{"/v1/broadcast", `{"data":2}`},
	} {
		wg.Go(func() {
			for !stop.Load() {
				if resp, err := httpClient.Post(n.Admin+req.path, "application/json", strings.NewReader(req.body)); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	defer func() { stop.Store(true); wg.Wait() }()
	for i := range 100 {
		conn, status, err := psDialRaw(n.URL, http.Header{"X-Client-Id": {"bob"}})
		if err != nil {
			t.Fatalf("dial %d: %v (HTTP %d)", i, err, status)
		}
		_ = conn.SetReadDeadline(time.Now().Add(psWait))
		_, b, err := conn.ReadMessage()
		conn.Close()
		if err != nil {
			t.Fatalf("connection %d: reading the first frame: %v", i, err)
		}
		var f psFrame
		if err := json.Unmarshal(b, &f); err != nil || f.Type != "welcome" {
			t.Fatalf("connection %d: first frame %s, want welcome", i, b)
		}
	}
}

// TestSubThenUnsubReplies checks that a sub followed at once by an unsub gets both
// replies, in the order sent: the unsub's reply waits behind the sub's confirmation.
func TestSubThenUnsubReplies(t *testing.T) {
	n := psStartNode(t, server.Options{})
	c := psDial(t, n, "a")
	for range 20 {
		c.write(t, `{"op":"sub","channel":"c"}`)
		c.write(t, `{"op":"unsub","channel":"c"}`)
		if f := c.read(t); f.Type != "subscribed" || f.Channel != "c" {
			t.Fatalf("first reply = %s, want subscribed to c", f)
		}
		if f := c.read(t); f.Type != "unsubscribed" || f.Channel != "c" {
			t.Fatalf("second reply = %s, want unsubscribed from c", f)
		}
	}
	c.expectNothing(t, 200*time.Millisecond)
}

// TestPublishToClosingSocketCounted checks DESIGN's "delivered or counted as failed": a
// subscriber whose close frame is already out (here a 1003, in a drain a 1001) cannot take
// a message published to its channel, and that message counts in ws_messages_failed_total.
func TestPublishToClosingSocketCounted(t *testing.T) {
	n := psStartNode(t, server.Options{})
	c := htUpgrade(t, n.Addr)
	if f, err := c.readFrame(htSlack); err != nil || !strings.Contains(string(f.payload), `"welcome"`) {
		t.Fatalf("welcome: %q, %v", f.payload, err)
	}
	c.write(t, htMasked(codec.OpText, true, []byte(`{"op":"sub","channel":"c"}`)))
	if f, err := c.readFrame(htSlack); err != nil || !strings.Contains(string(f.payload), `"subscribed"`) {
		t.Fatalf("subscribed: %q, %v", f.payload, err)
	}
	c.write(t, htMasked(codec.OpBinary, true, []byte{1})) // the server closes with 1003
	if f, err := c.readFrame(htSlack); err != nil || f.op != codec.OpClose {
		t.Fatalf("close: op %v, %v", f.op, err)
	}
	before := n.Metric(t, "ws_messages_failed_total")
	psAccepted(t, n, "/v1/publish", `{"channel":"c","data":1}`, nil)
	n.WaitMetric(t, "ws_messages_failed_total", before+1)
	c.write(t, htMasked(codec.OpClose, true, htClosePayload(codec.CloseUnsupportedData, "")))
	if err := c.expectEOF(htSlack); err != nil {
		t.Fatalf("after the client's close: %v (a message reached a closing socket?)", err)
	}
}

// TestSendBeforeWelcomeCounted checks "delivered or counted as failed" for a message that
// reaches a socket still held for its welcome: each client sends a direct message to
// itself right behind its upgrade request, through NATS (so the welcome waits for the
// broker); every one of them arrives or counts in ws_messages_failed_total.
func TestSendBeforeWelcomeCounted(t *testing.T) {
	ns := psStartNATS(t, -1)
	n := psStartNode(t, server.Options{Broker: server.BrokerNATS, NATSURL: ns.ClientURL(), Loops: 1})
	const clients = 10
	delivered := 0
	for i := range clients {
		id := "self" + strconv.Itoa(i)
		nc, err := net.Dial("tcp", n.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		send := htMasked(codec.OpText, true, []byte(`{"op":"send","to":"`+id+`","data":1}`))
		if _, err := nc.Write(append(hdUpgradeRequest(n.Addr, "/", "X-Client-Id: "+id), send...)); err != nil {
			t.Fatal(err)
		}
		c := &hdConn{Conn: nc, br: bufio.NewReader(nc)}
		if resp, err := http.ReadResponse(c.br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("client %d: upgrade %v, %v", i, resp, err)
		}
		for {
			m, err := c.readMsg(300 * time.Millisecond)
			if err != nil {
				break // nothing more within 300 ms
			}
			if m.Type == "direct" {
				delivered++
			}
		}
	}
	n.WaitMetricFunc(t, "ws_messages_failed_total", func(v float64) bool { return int(v)+delivered >= clients })
	t.Logf("%d of %d sends delivered, the rest counted as failed", delivered, clients)
}

// TestPendingRepliesBounded checks that one client cannot queue replies without bound
// while the broker has yet to confirm: its welcome waits for the broker, and every message
// in the same write as its upgrade request is answered behind it, so past 4,096 waiting
// replies the socket is closed with 1008 (policy) instead of growing the interest queue.
func TestPendingRepliesBounded(t *testing.T) {
	n := psStartNode(t, server.Options{})
	bad := htMasked(codec.OpText, true, []byte("x")) // bad_json, one error reply each
	wire := hdUpgradeRequest(n.Addr, "/")
	for range 4200 {
		wire = append(wire, bad...)
	}
	nc, err := net.Dial("tcp", n.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(wire); err != nil {
		t.Fatal(err)
	}
	c := &hdConn{Conn: nc, br: bufio.NewReader(nc)}
	if resp, err := http.ReadResponse(c.br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v, %v", resp, err)
	}
	var closeFrame *hdCloseError
	_ = nc.SetReadDeadline(time.Now().Add(15 * time.Second))
	for closeFrame == nil {
		f, err := c.readFrame()
		if err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		if f.op == codec.OpClose {
			closeFrame = hdParseClose(f.payload)
		}
	}
	if closeFrame.code != codec.ClosePolicy {
		t.Errorf("close code %d, want 1008", closeFrame.code)
	}
}
