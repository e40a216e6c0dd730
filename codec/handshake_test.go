package codec

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// rfcKey and rfcAccept are the example of RFC 6455 §1.3.
const (
	rfcKey    = "dGhlIHNhbXBsZSBub25jZQ=="
	rfcAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
)

var minimalRequestLines = []string{
	"GET /chat HTTP/1.1",
	"Host: server.example.com",
	"Upgrade: websocket",
	"Connection: Upgrade",
	"Sec-WebSocket-Key: " + rfcKey,
	"Sec-WebSocket-Version: 13",
}

// requestHead joins lines into a request head ending in CRLFCRLF.
func requestHead(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n\r\n" }

// minimalRequest is the smallest request ParseRequest accepts.
var minimalRequest = requestHead(minimalRequestLines...)

// editedRequest returns minimalRequest without its header lines named in drop ('|'-separated,
// case-insensitive; "" drops nothing), with add appended as further header lines.
func editedRequest(drop string, add ...string) string {
	var lines []string
next:
	for i, l := range minimalRequestLines {
		for name := range strings.SplitSeq(drop, "|") {
			if i > 0 && name != "" && strings.HasPrefix(strings.ToLower(l), strings.ToLower(name)+":") {
				continue next
			}
		}
		lines = append(lines, l)
	}
	return requestHead(append(lines, add...)...)
}

// requestWithLine returns minimalRequest with its request line replaced.
func requestWithLine(line string) string {
	return requestHead(append([]string{line}, minimalRequestLines[1:]...)...)
}

// requestFields is a Request as strings, for comparing whole results.
type requestFields struct {
	Method, Target, Path, RawQuery                                string
	Host, Origin, Authorization, ClientID, Protocol, Key, Version string
}

func requestFieldsOf(r *Request) requestFields {
	return requestFields{
		string(r.Method), string(r.Target), string(r.Path), string(r.RawQuery),
		string(r.Host), string(r.Origin), string(r.Authorization), string(r.ClientID),
		string(r.Protocol), string(r.Key), string(r.Version),
	}
}

// minimalRequestFields are the fields of minimalRequest, edited by edit when non-nil.
func minimalRequestFields(edit func(*requestFields)) *requestFields {
	f := requestFields{
		Method: "GET", Target: "/chat", Path: "/chat",
		Host: "server.example.com", Key: rfcKey, Version: "13",
	}
	if edit != nil {
		edit(&f)
	}
	return &f
}

type parseCase struct {
	name string
	in   string
	want *HandshakeError // nil: accepted, with fields
	// fields are the parsed fields of an accepted request; nil skips the comparison.
	fields *requestFields
}

// parseCases are complete request heads: ParseRequest must return n == len(in) and want.
var parseCases = []parseCase{
	// Accepted.
	{name: "minimal", in: minimalRequest, fields: minimalRequestFields(nil)},
	{
		name: "all fields",
		in: requestHead(
			"GET /ws/v1?token=abc&client_id=u%201 HTTP/1.1",
			"Host: ws.example.com:8443",
			"Origin: https://app.example.com",
			"Authorization: Bearer eyJ.x.y",
			"X-Client-Id: user-42",
			"Sec-WebSocket-Protocol: wsr.v1, json",
			"Upgrade: websocket",
			"Connection: Upgrade",
			"Sec-WebSocket-Key: "+rfcKey,
			"Sec-WebSocket-Version: 13",
		),
		fields: &requestFields{
			Method: "GET", Target: "/ws/v1?token=abc&client_id=u%201", Path: "/ws/v1",
			RawQuery: "token=abc&client_id=u%201", Host: "ws.example.com:8443",
			Origin: "https://app.example.com", Authorization: "Bearer eyJ.x.y",
			ClientID: "user-42", Protocol: "wsr.v1, json", Key: rfcKey, Version: "13",
		},
	},
	{
		name: "header names any case, values trimmed",
		in: requestHead(
			"GET / HTTP/1.1",
			"hOST: \t example.com \t",
			"UPGRADE: WebSocket",
			"connection: keep-alive, upgrade",
			"sec-websocket-key:"+rfcKey+" ",
			"SEC-WEBSOCKET-VERSION:   13",
			"x-client-id: abc",
		),
		fields: &requestFields{
			Method: "GET", Target: "/", Path: "/", Host: "example.com",
			ClientID: "abc", Key: rfcKey, Version: "13",
		},
	},
	{name: "empty query", in: requestWithLine("GET /chat? HTTP/1.1"),
		fields: minimalRequestFields(func(f *requestFields) { f.Target = "/chat?" })},
	{name: "second question mark stays in query", in: requestWithLine("GET /a?b=1?c HTTP/1.1"),
		fields: minimalRequestFields(func(f *requestFields) { f.Target, f.Path, f.RawQuery = "/a?b=1?c", "/a", "b=1?c" })},
	{name: "absolute-form http", in: requestWithLine("GET http://server.example.com/chat?x=1 HTTP/1.1"),
		fields: minimalRequestFields(func(f *requestFields) {
			f.Target, f.RawQuery = "http://server.example.com/chat?x=1", "x=1"
		})},
	{name: "absolute-form HTTPS any case", in: requestWithLine("GET HTTPS://server.example.com:443/chat HTTP/1.1"),
		fields: minimalRequestFields(func(f *requestFields) { f.Target = "HTTPS://server.example.com:443/chat" })},
	{name: "unknown and extension headers ignored",
		in: editedRequest("", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
			"User-Agent: test/1.0 (x; y)", "Hots: typo", "X-Empty:", "Cookie: a=b; c=d"),
		fields: minimalRequestFields(nil)},
	{name: "obs-text in a value", in: editedRequest("", "X-Name: caf\xc3\xa9 \xff"), fields: minimalRequestFields(nil)},
	{name: "tab inside a value", in: editedRequest("", "X-Name: a\tb"), fields: minimalRequestFields(nil)},
	{name: "Upgrade list", in: editedRequest("Upgrade", "Upgrade: h2c, WebSocket"), fields: minimalRequestFields(nil)},
	{name: "Upgrade with empty list elements", in: editedRequest("Upgrade", "Upgrade: , ,websocket,"), fields: minimalRequestFields(nil)},
	{name: "Upgrade repeated, second has websocket", in: editedRequest("Upgrade", "Upgrade: h2c", "Upgrade: websocket"),
		fields: minimalRequestFields(nil)},
	{name: "Connection keep-alive, Upgrade", in: editedRequest("Connection", "Connection: keep-alive, Upgrade"),
		fields: minimalRequestFields(nil)},
	{name: "Connection lower case without space", in: editedRequest("Connection", "Connection: keep-alive,upgrade"),
		fields: minimalRequestFields(nil)},
	{name: "Connection repeated", in: editedRequest("Connection", "Connection: keep-alive", "Connection: Upgrade"),
		fields: minimalRequestFields(nil)},
	{name: "Version with spaces", in: editedRequest("Sec-WebSocket-Version", "Sec-WebSocket-Version:  13  "),
		fields: minimalRequestFields(nil)},
	{name: "empty Origin is kept empty", in: editedRequest("", "Origin:"), fields: minimalRequestFields(nil)},

	// Request line: 400 bad_request unless only the method is wrong (405).
	{name: "empty request line", in: "\r\n\r\n", want: ErrBadRequestLine},
	{name: "garbage", in: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", want: ErrBadRequestLine},
	{name: "not HTTP", in: requestWithLine("SSH-2.0-OpenSSH_9.6"), want: ErrBadRequestLine},
	{name: "missing target and version", in: requestWithLine("GET"), want: ErrBadRequestLine},
	{name: "missing version", in: requestWithLine("GET /chat"), want: ErrBadRequestLine},
	{name: "missing target", in: requestWithLine("GET  HTTP/1.1"), want: ErrBadRequestLine},
	{name: "double space", in: requestWithLine("GET  /chat HTTP/1.1"), want: ErrBadRequestLine},
	{name: "trailing space", in: requestWithLine("GET /chat HTTP/1.1 "), want: ErrBadRequestLine},
	{name: "leading space", in: requestWithLine(" GET /chat HTTP/1.1"), want: ErrBadRequestLine},
	{name: "space in target", in: requestWithLine("GET /a b HTTP/1.1"), want: ErrBadRequestLine},
	{name: "tab separator", in: requestWithLine("GET\t/chat\tHTTP/1.1"), want: ErrBadRequestLine},
	{name: "method not a token", in: requestWithLine("G(T /chat HTTP/1.1"), want: ErrBadRequestLine},
	{name: "lower-case protocol name", in: requestWithLine("GET /chat http/1.1"), want: ErrBadRequestLine},
	{name: "HTTP/1.0", in: requestWithLine("GET /chat HTTP/1.0"), want: ErrHTTPVersion},
	{name: "HTTP/2.0", in: requestWithLine("GET /chat HTTP/2.0"), want: ErrHTTPVersion},
	{name: "HTTP/1.10", in: requestWithLine("GET /chat HTTP/1.10"), want: ErrHTTPVersion},
	{name: "POST over HTTP/1.0 is a version error", in: requestWithLine("POST /chat HTTP/1.0"), want: ErrHTTPVersion},
	{name: "target not origin-form", in: requestWithLine("GET chat HTTP/1.1"), want: ErrBadTarget},
	{name: "asterisk-form", in: requestWithLine("GET * HTTP/1.1"), want: ErrBadTarget},
	{name: "authority-form", in: requestWithLine("GET server.example.com:80 HTTP/1.1"), want: ErrBadTarget},
	{name: "absolute-form ws scheme", in: requestWithLine("GET ws://server.example.com/chat HTTP/1.1"), want: ErrBadTarget},
	{name: "absolute-form without path", in: requestWithLine("GET http://server.example.com HTTP/1.1"), want: ErrBadTarget},
	{name: "absolute-form query before path", in: requestWithLine("GET http://server.example.com?x=/ HTTP/1.1"), want: ErrBadTarget},
	{name: "absolute-form empty authority", in: requestWithLine("GET http:///chat HTTP/1.1"), want: ErrBadTarget},
	{name: "fragment", in: requestWithLine("GET /chat#top HTTP/1.1"), want: ErrBadTarget},
	{name: "control byte in target", in: requestWithLine("GET /ch\x01at HTTP/1.1"), want: ErrBadTarget},
	{name: "DEL in target", in: requestWithLine("GET /ch\x7fat HTTP/1.1"), want: ErrBadTarget},
	{name: "POST with bad target is 400", in: requestWithLine("POST chat HTTP/1.1"), want: ErrBadTarget},
	{name: "POST", in: requestWithLine("POST /chat HTTP/1.1"), want: ErrMethodNotAllowed},
	{name: "HEAD", in: requestWithLine("HEAD /chat HTTP/1.1"), want: ErrMethodNotAllowed},
	{name: "method is case-sensitive", in: requestWithLine("get /chat HTTP/1.1"), want: ErrMethodNotAllowed},
	{name: "POST is 405 before header errors", in: requestHead("POST /chat HTTP/1.1", "bad line"), want: ErrMethodNotAllowed},

	// Header syntax.
	{name: "space before colon", in: editedRequest("Host", "Host : server.example.com"), want: ErrBadHeaderLine},
	{name: "no colon", in: editedRequest("", "X-Foo bar"), want: ErrBadHeaderLine},
	{name: "empty name", in: editedRequest("", ": value"), want: ErrBadHeaderLine},
	{name: "name not a token", in: editedRequest("", "X(Foo): bar"), want: ErrBadHeaderLine},
	{name: "obs-fold with space", in: editedRequest("", "X-Foo: a", " continued"), want: ErrBadHeaderLine},
	{name: "obs-fold with tab", in: editedRequest("", "X-Foo: a", "\tcontinued: x"), want: ErrBadHeaderLine},
	{name: "NUL in value", in: editedRequest("", "X-Foo: a\x00b"), want: ErrBadHeaderLine},
	{name: "bare LF in value", in: editedRequest("", "X-Foo: a\nX-Bar: b"), want: ErrBadHeaderLine},
	{name: "bare CR in value", in: editedRequest("", "X-Foo: a\rb"), want: ErrBadHeaderLine},
	{name: "DEL in value", in: editedRequest("", "X-Foo: a\x7f"), want: ErrBadHeaderLine},
	{name: "lone CR line", in: editedRequest("", "\r"), want: ErrBadHeaderLine},

	// Headers that may appear once.
	{name: "duplicate Host", in: editedRequest("", "Host: other.example.com"), want: ErrDuplicateHeader},
	{name: "duplicate Host same value", in: editedRequest("", "host: server.example.com"), want: ErrDuplicateHeader},
	{name: "duplicate Key", in: editedRequest("", "Sec-WebSocket-Key: "+rfcKey), want: ErrDuplicateHeader},
	{name: "duplicate Version", in: editedRequest("", "Sec-WebSocket-Version: 13"), want: ErrDuplicateHeader},
	{name: "duplicate Origin", in: editedRequest("", "Origin: https://a.example", "Origin: https://b.example"), want: ErrDuplicateHeader},
	{name: "duplicate Authorization", in: editedRequest("", "Authorization: Bearer a", "Authorization: Bearer b"), want: ErrDuplicateHeader},
	{name: "duplicate X-Client-Id", in: editedRequest("", "X-Client-Id: a", "X-Client-Id: b"), want: ErrDuplicateHeader},
	{name: "duplicate Protocol", in: editedRequest("", "Sec-WebSocket-Protocol: a", "Sec-WebSocket-Protocol: b"), want: ErrDuplicateHeader},

	// Required headers, in the order they are checked.
	{name: "missing Host", in: editedRequest("Host"), want: ErrMissingHost},
	{name: "empty Host", in: editedRequest("Host", "Host:  "), want: ErrMissingHost},
	{name: "missing Host before missing Upgrade", in: editedRequest("Host", "Upgrade: h2c"), want: ErrMissingHost},
	{name: "missing Upgrade", in: editedRequest("Upgrade"), want: ErrBadUpgrade},
	{name: "Upgrade h2c", in: editedRequest("Upgrade", "Upgrade: h2c"), want: ErrBadUpgrade},
	{name: "Upgrade websocketx", in: editedRequest("Upgrade", "Upgrade: websocketx"), want: ErrBadUpgrade},
	{name: "Upgrade with product version", in: editedRequest("Upgrade", "Upgrade: websocket/13"), want: ErrBadUpgrade},
	{name: "Upgrade header name only", in: editedRequest("Upgrade", "Upgrade:"), want: ErrBadUpgrade},
	{name: "websocket in another header", in: editedRequest("Upgrade", "X-Upgrade: websocket"), want: ErrBadUpgrade},
	{name: "missing Connection", in: editedRequest("Connection"), want: ErrBadConnection},
	{name: "Connection keep-alive", in: editedRequest("Connection", "Connection: keep-alive"), want: ErrBadConnection},
	{name: "Connection Upgradefoo", in: editedRequest("Connection", "Connection: Upgradefoo"), want: ErrBadConnection},
	{name: "Connection space-separated", in: editedRequest("Connection", "Connection: keep-alive Upgrade"), want: ErrBadConnection},
	{name: "Connection with parameter", in: editedRequest("Connection", "Connection: Upgrade;q=1"), want: ErrBadConnection},
	{name: "missing Version", in: editedRequest("Sec-WebSocket-Version"), want: ErrUnsupportedVersion},
	{name: "Version 8", in: editedRequest("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"), want: ErrUnsupportedVersion},
	{name: "Version list", in: editedRequest("Sec-WebSocket-Version", "Sec-WebSocket-Version: 13, 8"), want: ErrUnsupportedVersion},
	{name: "Version 013", in: editedRequest("Sec-WebSocket-Version", "Sec-WebSocket-Version: 013"), want: ErrUnsupportedVersion},
	{name: "missing Version before missing Key", in: editedRequest("Sec-WebSocket-Version|Sec-WebSocket-Key"), want: ErrUnsupportedVersion},
	{name: "Version 8 before bad Key", in: editedRequest("Sec-WebSocket-Version|Sec-WebSocket-Key",
		"Sec-WebSocket-Version: 8", "Sec-WebSocket-Key: short"), want: ErrUnsupportedVersion},
	{name: "missing Connection before bad Version", in: editedRequest("Connection|Sec-WebSocket-Version"), want: ErrBadConnection},
	{name: "missing Upgrade before missing Connection", in: editedRequest("Upgrade|Connection"), want: ErrBadUpgrade},
	{name: "missing Key", in: editedRequest("Sec-WebSocket-Key"), want: ErrBadKey},
	{name: "empty Key", in: editedRequest("Sec-WebSocket-Key", "Sec-WebSocket-Key:"), want: ErrBadKey},
	{name: "Key not base64", in: editedRequest("Sec-WebSocket-Key", "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!=="), want: ErrBadKey},
	{name: "Key URL alphabet", in: editedRequest("Sec-WebSocket-Key", "Sec-WebSocket-Key: ____________________-w=="), want: ErrBadKey},
	{name: "Key of 15 bytes", in: editedRequest("Sec-WebSocket-Key", "Sec-WebSocket-Key: "+base64Of(15)), want: ErrBadKey},
	{name: "Key of 17 bytes", in: editedRequest("Sec-WebSocket-Key", "Sec-WebSocket-Key: "+base64Of(17)), want: ErrBadKey},
	{name: "Key of 18 bytes, 24 characters", in: editedRequest("Sec-WebSocket-Key", "Sec-WebSocket-Key: "+base64Of(18)), want: ErrBadKey},
	{name: "Key without padding", in: editedRequest("Sec-WebSocket-Key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ"), want: ErrBadKey},
	{name: "Key with inner space", in: editedRequest("Sec-WebSocket-Key", "Sec-WebSocket-Key: dGhlIHNhbXBsZ Bub25jZQ=="), want: ErrBadKey},
}

// base64Of is the base64 of n bytes.
func base64Of(n int) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xa5}, n)) }

func TestParseRequest(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			n, err := ParseRequest([]byte(tc.in), 0, &r)
			if n != len(tc.in) {
				t.Errorf("n = %d, want %d", n, len(tc.in))
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				if tc.fields != nil {
					if got := requestFieldsOf(&r); got != *tc.fields {
						t.Errorf("fields:\n got %+v\nwant %+v", got, *tc.fields)
					}
				}
				return
			}
			checkHandshakeError(t, err, tc.want)
		})
	}
}

// checkHandshakeError asserts err is want, with its exact status and reason.
func checkHandshakeError(t *testing.T, err error, want *HandshakeError) {
	t.Helper()
	var he *HandshakeError
	if !errors.As(err, &he) {
		t.Fatalf("err = %v, want *HandshakeError %d %s", err, want.Status, want.Reason)
	}
	if he.Status != want.Status || he.Reason != want.Reason {
		t.Errorf("status, reason = %d, %q, want %d, %q", he.Status, he.Reason, want.Status, want.Reason)
	}
	if !errors.Is(err, want) {
		t.Errorf("err = %q, want %q", err, want)
	}
}

// TestParseRequestStatuses pins the status and reason of every error ParseRequest returns,
// independent of the package variables the table compares against.
func TestParseRequestStatuses(t *testing.T) {
	tests := []struct {
		err    *HandshakeError
		status int
		reason string
	}{
		{ErrHeadTooLarge, 431, "too_large"},
		{ErrBadRequestLine, 400, "bad_request"},
		{ErrHTTPVersion, 400, "bad_request"},
		{ErrBadTarget, 400, "bad_request"},
		{ErrMethodNotAllowed, 405, "method"},
		{ErrBadHeaderLine, 400, "bad_request"},
		{ErrDuplicateHeader, 400, "bad_request"},
		{ErrMissingHost, 400, "bad_request"},
		{ErrBadUpgrade, 400, "bad_request"},
		{ErrBadConnection, 400, "bad_request"},
		{ErrUnsupportedVersion, 426, "version"},
		{ErrBadKey, 400, "bad_request"},
	}
	for _, tc := range tests {
		if tc.err.Status != tc.status || tc.err.Reason != tc.reason {
			t.Errorf("%q: status, reason = %d, %q, want %d, %q", tc.err.Msg, tc.err.Status, tc.err.Reason, tc.status, tc.reason)
		}
	}
}

func TestParseRequestTestdata(t *testing.T) {
	files := handshakeTestdata(t)
	if len(files) == 0 {
		t.Fatal("no testdata/handshake/*.http files")
	}
	for name, in := range files {
		t.Run(name, func(t *testing.T) {
			var r Request
			n, err := ParseRequest(in, 0, &r)
			if err != nil || n != len(in) {
				t.Fatalf("ParseRequest = %d, %v, want %d, nil", n, err, len(in))
			}
			if len(r.Host) == 0 || len(r.Key) != 24 || string(r.Path) != "/ws" {
				t.Errorf("fields = %+v", requestFieldsOf(&r))
			}
		})
	}
}

// handshakeTestdata reads testdata/handshake/*.http with line endings made CRLF.
func handshakeTestdata(tb testing.TB) map[string][]byte {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "handshake", "*.http"))
	if err != nil {
		tb.Fatal(err)
	}
	files := make(map[string][]byte, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
		files[filepath.Base(p)] = bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
	}
	return files
}

func TestParseRequestIncompleteAtEveryPrefix(t *testing.T) {
	inputs := map[string]string{"minimal": minimalRequest}
	for name, b := range handshakeTestdata(t) {
		inputs[name] = string(b)
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			var r Request
			for k := range len(in) {
				n, err := ParseRequest([]byte(in[:k]), 0, &r)
				if n != 0 || err != ErrIncomplete {
					t.Fatalf("prefix of %d bytes: ParseRequest = %d, %v, want 0, ErrIncomplete", k, n, err)
				}
			}
			if n, err := ParseRequest([]byte(in), 0, &r); n != len(in) || err != nil {
				t.Fatalf("whole: ParseRequest = %d, %v, want %d, nil", n, err, len(in))
			}
		})
	}
}

func TestParseRequestPipelined(t *testing.T) {
	// A masked text frame "Hello" (RFC 6455 §5.7), and one whose bytes hold CRLFCRLF.
	tests := []struct {
		name string
		rest string
	}{
		{name: "frame", rest: "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"},
		{name: "frame holding CRLFCRLF", rest: "\x81\x84\x00\x00\x00\x00\r\n\r\n"},
		{name: "second request head", rest: minimalRequest},
		{name: "one byte", rest: "\x81"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(minimalRequest + tc.rest)
			var r Request
			n, err := ParseRequest(b, 0, &r)
			if err != nil || n != len(minimalRequest) {
				t.Fatalf("ParseRequest = %d, %v, want %d, nil", n, err, len(minimalRequest))
			}
			if got := string(b[n:]); got != tc.rest {
				t.Errorf("b[n:] = %q, want %q", got, tc.rest)
			}
		})
	}
	// A rejected head also reports where it ends.
	b := []byte(requestWithLine("POST /chat HTTP/1.1") + "trailing")
	var r Request
	if n, err := ParseRequest(b, 0, &r); n != len(b)-len("trailing") || !errors.Is(err, ErrMethodNotAllowed) {
		t.Errorf("rejected requestHead: ParseRequest = %d, %v", n, err)
	}
}

func TestParseRequestLimit(t *testing.T) {
	// padded returns a valid head of exactly size bytes, padded with an ignored header.
	padded := func(size int) string {
		pad := size - len(minimalRequest) - len("X-Pad: \r\n")
		if pad < 0 {
			t.Fatalf("size %d too small", size)
		}
		return editedRequest("", "X-Pad: "+strings.Repeat("p", pad))
	}
	noEnd := func(size int) string {
		return "GET /chat HTTP/1.1\r\nX-Pad: " + strings.Repeat("p", size-len("GET /chat HTTP/1.1\r\nX-Pad: "))
	}
	tls := "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
	tests := []struct {
		name  string
		in    string
		limit int
		wantN int
		want  error
	}{
		{name: "head exactly at limit", in: padded(512), limit: 512, wantN: 512},
		{name: "head exactly at limit, frame after", in: padded(512) + "\x81\x80\x00\x00\x00\x00", limit: 512, wantN: 512},
		{name: "head one over limit", in: padded(513), limit: 512, want: ErrHeadTooLarge},
		{name: "head one over limit, more after", in: padded(513) + "\x81", limit: 512, want: ErrHeadTooLarge},
		{name: "no end, one under limit", in: noEnd(511), limit: 512, want: ErrIncomplete},
		{name: "no end, at limit", in: noEnd(512), limit: 512, want: ErrHeadTooLarge},
		{name: "no end, over limit", in: noEnd(600), limit: 512, want: ErrHeadTooLarge},
		{name: "CRLFCR at limit", in: noEnd(509) + "\r\n\r", limit: 512, want: ErrHeadTooLarge},
		{name: "default limit, requestHead at 8 KiB", in: padded(8192), limit: 0, wantN: 8192},
		{name: "default limit, requestHead over 8 KiB", in: padded(8193), limit: 0, want: ErrHeadTooLarge},
		{name: "default limit, no end under 8 KiB", in: noEnd(8191), limit: 0, want: ErrIncomplete},
		{name: "default limit, no end at 8 KiB", in: noEnd(8192), limit: 0, want: ErrHeadTooLarge},
		{name: "negative limit is default", in: noEnd(8191), limit: -1, want: ErrIncomplete},
		{name: "negative limit is default, at 8 KiB", in: noEnd(8192), limit: -1, want: ErrHeadTooLarge},
		{name: "empty input", in: "", limit: 0, want: ErrIncomplete},
		{name: "TLS ClientHello accumulates", in: tls + strings.Repeat("\x00", 500), limit: 0, want: ErrIncomplete},
		{name: "TLS ClientHello reaches limit", in: tls + strings.Repeat("\x00", 8192), limit: 0, want: ErrHeadTooLarge},
		{name: "bare LF requestHead waits", in: strings.ReplaceAll(minimalRequest, "\r\n", "\n"), limit: 0, want: ErrIncomplete},
		{name: "bare LF requestHead reaches limit", in: strings.ReplaceAll(minimalRequest, "\r\n", "\n"), limit: 64, want: ErrHeadTooLarge},
		{name: "tiny limit", in: "GE", limit: 1, want: ErrHeadTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			n, err := ParseRequest([]byte(tc.in), tc.limit, &r)
			if n != tc.wantN {
				t.Errorf("n = %d, want %d", n, tc.wantN)
			}
			switch want := tc.want.(type) {
			case nil:
				if err != nil {
					t.Errorf("err = %v, want nil", err)
				}
			case *HandshakeError:
				checkHandshakeError(t, err, want)
			default:
				if err != want {
					t.Errorf("err = %v, want %v", err, want)
				}
			}
		})
	}
}

func TestParseRequestResetsAndAliases(t *testing.T) {
	var r Request
	full := []byte(editedRequest("", "Origin: https://a.example", "X-Client-Id: abc"))
	if _, err := ParseRequest(full, 0, &r); err != nil || string(r.Origin) != "https://a.example" {
		t.Fatalf("ParseRequest = %v, Origin %q", err, r.Origin)
	}
	// The fields alias the input: no copy was made.
	if i := bytes.Index(full, []byte("abc")); &full[i] != &r.ClientID[0] {
		t.Error("ClientID does not alias the input")
	}
	full[bytes.Index(full, []byte("abc"))] = 'x'
	if string(r.ClientID) != "xbc" {
		t.Errorf("ClientID = %q after editing the input, want %q", r.ClientID, "xbc")
	}
	// A second parse leaves nothing of the first, also after an error.
	if _, err := ParseRequest([]byte(minimalRequest), 0, &r); err != nil || r.Origin != nil || r.ClientID != nil {
		t.Errorf("after reuse: err %v, Origin %q, ClientID %q", err, r.Origin, r.ClientID)
	}
	ParseRequest([]byte("GET /x"), 0, &r)
	if got := requestFieldsOf(&r); got != (requestFields{}) {
		t.Errorf("after ErrIncomplete: requestFields %+v, want empty", got)
	}
	r.Method = []byte("GET")
	r.Reset()
	if got := requestFieldsOf(&r); got != (requestFields{}) {
		t.Errorf("after Reset: requestFields %+v, want empty", got)
	}
}

func TestQueryParam(t *testing.T) {
	const query = "token=abc&client_id=u%201&empty=&flag&&token=second&a=b=c&client%5Fid=enc"
	tests := []struct {
		name   string
		target string
		param  string
		want   string
		found  bool
	}{
		{name: "first of two", target: "/ws?" + query, param: "token", want: "abc", found: true},
		{name: "raw percent-encoding", target: "/ws?" + query, param: "client_id", want: "u%201", found: true},
		{name: "empty value", target: "/ws?" + query, param: "empty", want: "", found: true},
		{name: "no equals sign", target: "/ws?" + query, param: "flag", want: "", found: true},
		{name: "value holds equals sign", target: "/ws?" + query, param: "a", want: "b=c", found: true},
		{name: "encoded key compared raw", target: "/ws?" + query, param: "client%5Fid", want: "enc", found: true},
		{name: "absent", target: "/ws?" + query, param: "missing"},
		{name: "prefix of a key", target: "/ws?" + query, param: "tok"},
		{name: "key is a prefix", target: "/ws?" + query, param: "tokens"},
		{name: "no query", target: "/ws", param: "token"},
		{name: "empty query", target: "/ws?", param: "token"},
		{name: "only separators", target: "/ws?&&&", param: ""},
		{name: "last parameter", target: "/ws?x=1&token=z", param: "token", want: "z", found: true},
		{name: "semicolon is not a separator", target: "/ws?x=1;token=z", param: "token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			if _, err := ParseRequest([]byte(requestWithLine("GET "+tc.target+" HTTP/1.1")), 0, &r); err != nil {
				t.Fatal(err)
			}
			got, found := r.QueryParam(tc.param)
			if string(got) != tc.want || found != tc.found {
				t.Errorf("QueryParam(%q) = %q, %v, want %q, %v", tc.param, got, found, tc.want, tc.found)
			}
		})
	}
}

func TestAppendAcceptRFCExample(t *testing.T) {
	var r Request
	if _, err := ParseRequest([]byte(minimalRequest), 0, &r); err != nil {
		t.Fatal(err)
	}
	const want = "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + rfcAccept + "\r\n\r\n"
	if got := string(AppendAccept(nil, &r, "")); got != want {
		t.Errorf("AppendAccept =\n%q\nwant\n%q", got, want)
	}
	// It appends to what dst already holds.
	if got := string(AppendAccept([]byte("prefix"), &r, "")); got != "prefix"+want {
		t.Errorf("AppendAccept after prefix = %q", got)
	}
}

func TestAppendAcceptParses(t *testing.T) {
	tests := []struct {
		name     string
		protocol string
		wantProt string
	}{
		{name: "no protocol"},
		{name: "protocol", protocol: "wsr.v1", wantProt: "wsr.v1"},
		{name: "not a token is left out", protocol: "a\r\nSet-Cookie: x=y"},
		{name: "list is left out", protocol: "a, b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			if _, err := ParseRequest([]byte(editedRequest("", "Sec-WebSocket-Protocol: json, wsr.v1")), 0, &r); err != nil {
				t.Fatal(err)
			}
			out := AppendAccept(nil, &r, tc.protocol)
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
			if err != nil {
				t.Fatalf("ReadResponse(%q): %v", out, err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols || resp.Proto != "HTTP/1.1" {
				t.Errorf("status = %d %s", resp.StatusCode, resp.Proto)
			}
			h := resp.Header
			if h.Get("Upgrade") != "websocket" || h.Get("Connection") != "Upgrade" || h.Get("Sec-WebSocket-Accept") != rfcAccept {
				t.Errorf("headers = %v", h)
			}
			if got := h.Values("Sec-WebSocket-Protocol"); strings.Join(got, ",") != tc.wantProt {
				t.Errorf("Sec-WebSocket-Protocol = %q, want %q", got, tc.wantProt)
			}
			wantLen := 3
			if tc.wantProt != "" {
				wantLen++
			}
			if len(h) != wantLen {
				t.Errorf("headers = %v, want %d of them", h, wantLen)
			}
		})
	}
}

// TestAcceptKey checks Sec-WebSocket-Accept against a direct computation for many keys,
// including a longer key from a caller that skipped validation.
func TestAcceptKey(t *testing.T) {
	keys := []string{rfcKey, base64Of(16), base64Of(40), "", "x"}
	for i := range 64 {
		keys = append(keys, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{byte(i * 37)}, 16)))
	}
	for _, key := range keys {
		sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		want := base64.StdEncoding.EncodeToString(sum[:])
		var got [28]byte
		acceptKey(&got, []byte(key))
		if string(got[:]) != want {
			t.Errorf("acceptKey(%q) = %s, want %s", key, got[:], want)
		}
	}
}

func TestAppendReject(t *testing.T) {
	tests := []struct {
		name       string
		err        *HandshakeError
		extra      []string
		wantStatus int
		wantHeader map[string]string // headers that must be present; "" means absent
	}{
		{name: "bad request", err: ErrBadKey, wantStatus: 400,
			wantHeader: map[string]string{"Sec-WebSocket-Version": "", "Allow": ""}},
		{name: "method", err: ErrMethodNotAllowed, wantStatus: 405, wantHeader: map[string]string{"Allow": "GET"}},
		{name: "version", err: ErrUnsupportedVersion, wantStatus: 426,
			wantHeader: map[string]string{"Sec-WebSocket-Version": "13"}},
		{name: "too large", err: ErrHeadTooLarge, wantStatus: 431},
		{name: "auth with extra header", err: &HandshakeError{401, "auth", "invalid token"},
			extra: []string{"WWW-Authenticate: Bearer"}, wantStatus: 401,
			wantHeader: map[string]string{"WWW-Authenticate": "Bearer"}},
		{name: "origin", err: &HandshakeError{403, "origin", "origin not allowed"}, wantStatus: 403},
		{name: "capacity with Retry-After", err: &HandshakeError{503, "capacity", "at capacity"},
			extra: []string{"Retry-After: 1", "X-Node: a"}, wantStatus: 503,
			wantHeader: map[string]string{"Retry-After": "1", "X-Node": "a"}},
		{name: "extra header with CRLF left out", err: ErrBadKey,
			extra: []string{"X-A: 1\r\nSet-Cookie: x=y", "", "X-B: 2"}, wantStatus: 400,
			wantHeader: map[string]string{"Set-Cookie": "", "X-A": "", "X-B": "2"}},
		{name: "timeout, unknown text", err: &HandshakeError{408, "timeout", "handshake timeout"}, wantStatus: 408},
		{name: "unlisted status", err: &HandshakeError{418, "x", "teapot"}, wantStatus: 418},
		{name: "success status becomes 500", err: &HandshakeError{200, "x", "oops"}, wantStatus: 500},
		{name: "zero status becomes 500", err: &HandshakeError{Msg: "zero"}, wantStatus: 500},
		{name: "empty message", err: &HandshakeError{400, "bad_request", ""}, wantStatus: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := AppendReject(nil, tc.err, tc.extra...)
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
			if err != nil {
				t.Fatalf("ReadResponse(%q): %v", out, err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus || resp.Proto != "HTTP/1.1" {
				t.Errorf("status = %d %s, want %d", resp.StatusCode, resp.Proto, tc.wantStatus)
			}
			if !strings.HasPrefix(string(out), "HTTP/1.1 "+strconv.Itoa(tc.wantStatus)+" ") {
				t.Errorf("status line of %q", out)
			}
			// ReadResponse turns "Connection: close" into resp.Close and drops the header.
			if !resp.Close || !bytes.Contains(out, []byte("\r\nConnection: close\r\n")) {
				t.Errorf("no Connection: close in %q", out)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type = %q", ct)
			}
			if want := int64(len(tc.err.Msg) + 1); resp.ContentLength != want || resp.Header.Get("Content-Length") != strconv.FormatInt(want, 10) {
				t.Errorf("Content-Length = %d, want %d", resp.ContentLength, want)
			}
			if string(body) != tc.err.Msg+"\n" {
				t.Errorf("body = %q, want %q", body, tc.err.Msg+"\n")
			}
			for name, want := range tc.wantHeader {
				if got := resp.Header.Get(name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			// Nothing follows the body, so the connection can be closed right after it.
			if !bytes.HasSuffix(out, []byte("\r\n\r\n"+tc.err.Msg+"\n")) {
				t.Errorf("output does not end with the body: %q", out)
			}
		})
	}
}

func TestAppendRejectVersion(t *testing.T) {
	var r Request
	_, err := ParseRequest([]byte(editedRequest("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8")), 0, &r)
	var he *HandshakeError
	if !errors.As(err, &he) || he.Status != 426 || he.Reason != "version" {
		t.Fatalf("err = %v, want 426 version", err)
	}
	if out := AppendReject(nil, he); !bytes.Contains(out, []byte("\r\nSec-WebSocket-Version: 13\r\n")) {
		t.Errorf("426 response lacks Sec-WebSocket-Version: 13:\n%s", out)
	}
}

func TestHandshakeErrorError(t *testing.T) {
	if got, want := ErrUnsupportedVersion.Error(), "codec: handshake: 426 unsupported Sec-WebSocket-Version: need 13"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := (&HandshakeError{503, "capacity", "at capacity"}).Error(), "codec: handshake: 503 at capacity"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestHandshakeAllocs checks the event loop's path allocates nothing per request.
func TestHandshakeAllocs(t *testing.T) {
	in := handshakeTestdata(t)["chrome.http"]
	var r Request
	buf := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ParseRequest(in, 0, &r); err != nil {
			t.Fatal(err)
		}
		if _, ok := r.QueryParam("token"); !ok {
			t.Fatal("no token")
		}
		buf = AppendAccept(buf[:0], &r, "wsr.v1")
		buf = AppendReject(buf[:0], ErrUnsupportedVersion, "Retry-After: 1")
		ParseRequest(in[:100], 0, &r)
		ParseRequest([]byte(nil), 1, &r)
	})
	if allocs != 0 {
		t.Errorf("allocs per handshake = %v, want 0", allocs)
	}
}

// TestValidFieldValue checks the eight-bytes-at-a-time test against the byte-by-byte one
// for every byte at every position of a word and its neighbour, and every pair of bytes
// side by side (a borrow from one byte must not hide or invent a control in the next).
func TestValidFieldValue(t *testing.T) {
	for c := range 256 {
		for pos := range 17 {
			v := bytes.Repeat([]byte{'a'}, 17)
			v[pos] = byte(c)
			if got, want := validFieldValue(v), validFieldBytes(v); got != want {
				t.Fatalf("validFieldValue(%q) = %v, want %v", v, got, want)
			}
		}
	}
	for c1 := range 256 {
		for c2 := range 256 {
			for _, fill := range []byte{'a', '\t', 0x80, 0xff, 0x20} {
				v := bytes.Repeat([]byte{fill}, 8)
				v[3], v[4] = byte(c1), byte(c2)
				if got, want := validFieldValue(v), validFieldBytes(v); got != want {
					t.Fatalf("validFieldValue(%q) = %v, want %v", v, got, want)
				}
			}
		}
	}
}
