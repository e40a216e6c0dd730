package codec

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"strconv"

	"github.com/gobwas/httphead"
)

// DefaultMaxHeaderBytes is the default limit on the request head (request line + headers +
// CRLFCRLF). 8 KiB is the figure DESIGN.md promises (431 over it) and what common proxies
// allow by default; a browser upgrade request is well under 1 KiB even with cookies.
const DefaultMaxHeaderBytes = 8 << 10

// Request is a parsed upgrade request. All byte slices alias the input passed to
// ParseRequest and are valid only until the caller reuses or discards that buffer; copy a
// field (for example ClientID) before it outlives the buffer or leaves the event loop.
// Reuse one Request per loop: parsing never allocates.
//
// A header that was absent leaves its field empty; a header sent with an empty value is
// also empty, so callers cannot tell the two apart (an empty Origin is treated like a
// missing one).
type Request struct {
	// Method is the request method (always "GET" once ParseRequest returns nil).
	// Target is the request-target as sent; Path is Target before '?' (for an absolute-form
	// target, the path component only); RawQuery is what follows the first '?', without
	// it, still percent-encoded, and empty when there is no '?'.
	Method, Target, Path, RawQuery []byte
	// Header values with surrounding spaces and tabs trimmed: Host, Origin, Authorization,
	// X-Client-Id, Sec-WebSocket-Protocol, Sec-WebSocket-Key, Sec-WebSocket-Version.
	Host, Origin, Authorization, ClientID, Protocol, Key, Version []byte
}

// Reset clears r for reuse without freeing anything.
func (r *Request) Reset() { *r = Request{} }

// QueryParam returns the raw (still percent-encoded) value of the first query parameter
// named name, and whether it was present. Parameters are separated by '&'; a parameter
// without '=' is present with an empty value. name is compared with the raw key, so a key
// the client percent-encoded ("client%5Fid") does not match its decoded name. The value
// aliases the request buffer like every other field.
func (r *Request) QueryParam(name string) ([]byte, bool) {
	q := r.RawQuery
	for len(q) > 0 {
		var pair []byte
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			pair, q = q[:i], q[i+1:]
		} else {
			pair, q = q, nil
		}
		key, val := pair, pair[len(pair):]
		if i := bytes.IndexByte(pair, '='); i >= 0 {
			key, val = pair[:i], pair[i+1:]
		}
		if len(pair) > 0 && string(key) == name {
			return val, true
		}
	}
	return nil, false
}

// HandshakeError is a rejected upgrade: the HTTP status to answer and a closed-set reason
// label for the ws_upgrade_failures_total metric. The package's HandshakeErrors are
// immutable package-level values (compare them with errors.Is); the server builds its own
// for 401 ("auth"), 403 ("origin"), 503 ("capacity") and the handshake timeout ("timeout").
type HandshakeError struct {
	Status int    // HTTP status: 400, 405, 426 or 431 from ParseRequest
	Reason string // metric label: "bad_request", "method", "version" or "too_large" from ParseRequest
	Msg    string // short human text for the response body
}

// Error implements error: "codec: handshake: <status> <msg>".
func (e *HandshakeError) Error() string {
	return "codec: handshake: " + strconv.Itoa(e.Status) + " " + e.Msg
}

// Metric labels of the upgrade failures ParseRequest reports (DESIGN.md, Metrics).
const (
	reasonBadRequest = "bad_request"
	reasonMethod     = "method"
	reasonVersion    = "version"
	reasonTooLarge   = "too_large"
)

// Upgrade failures found by ParseRequest, in the order it checks for them. Each maps to the
// status DESIGN.md assigns (Close codes, "Before the upgrade").
var (
	ErrHeadTooLarge       = &HandshakeError{431, reasonTooLarge, "request head too large"}                    // RFC 6585 §5
	ErrBadRequestLine     = &HandshakeError{400, reasonBadRequest, "malformed request line"}                  // RFC 7230 §3.1.1
	ErrHTTPVersion        = &HandshakeError{400, reasonBadRequest, "unsupported HTTP version: need HTTP/1.1"} // RFC 6455 §4.2.1 (1)
	ErrBadTarget          = &HandshakeError{400, reasonBadRequest, "malformed request target"}                // RFC 6455 §4.1, §3
	ErrMethodNotAllowed   = &HandshakeError{405, reasonMethod, "method not allowed: upgrade needs GET"}       // RFC 6455 §4.2.1 (1)
	ErrBadHeaderLine      = &HandshakeError{400, reasonBadRequest, "malformed header line"}                   // RFC 7230 §3.2, §3.2.4
	ErrDuplicateHeader    = &HandshakeError{400, reasonBadRequest, "header repeated that must appear once"}   // RFC 6455 §11.3, RFC 7230 §5.4
	ErrMissingHost        = &HandshakeError{400, reasonBadRequest, "missing Host header"}                     // RFC 6455 §4.2.1 (2)
	ErrBadUpgrade         = &HandshakeError{400, reasonBadRequest, "Upgrade header must include websocket"}   // RFC 6455 §4.2.1 (3)
	ErrBadConnection      = &HandshakeError{400, reasonBadRequest, "Connection header must include Upgrade"}  // RFC 6455 §4.2.1 (4)
	ErrUnsupportedVersion = &HandshakeError{426, reasonVersion, "unsupported Sec-WebSocket-Version: need 13"} // RFC 6455 §4.2.2 (4)
	ErrBadKey             = &HandshakeError{400, reasonBadRequest, "missing or invalid Sec-WebSocket-Key"}    // RFC 6455 §4.2.1 (5)
)

// headEnd terminates the request head (RFC 7230 §3). Bare LF line endings are not accepted:
// a head that never sends CRLFCRLF waits for the limit (431) or the server's handshake
// timeout, like any other garbage.
var headEnd = []byte("\r\n\r\n")

// ParseRequest looks for a complete request head (terminated by CRLFCRLF) at the front of b
// and validates it as a WebSocket upgrade (RFC 6455 §4.2.1). It never allocates and never
// panics, and its result depends on nothing in b past the head. Lines must end in CRLF:
// a bare CR or LF inside the head, obsolete line folding, or whitespace before a header's
// colon is 400 (RFC 7230 §3.2.4).
//
// It returns ErrIncomplete when b holds no CRLFCRLF and len(b) < maxHeaderBytes
// (maxHeaderBytes <= 0 means DefaultMaxHeaderBytes); ErrHeadTooLarge (431) with n == 0 once
// len(b) >= maxHeaderBytes and b[:maxHeaderBytes] holds no CRLFCRLF, since the head can no
// longer end within the limit (a head of exactly maxHeaderBytes is accepted). Bytes that
// never form a head, such as a TLS ClientHello, therefore accumulate until 431 or the
// server's handshake timeout. A prefix of a complete head is always incomplete, so the
// result does not depend on how the network split the bytes.
//
// Otherwise it fills r (see Request for how long the fields stay valid) and returns
// n = length of the head including the final CRLFCRLF; bytes after n are the client's first
// WebSocket frames and must be kept by the caller. On a validation failure it returns n and
// one of the package's *HandshakeError values, checking in this order: request line
// (malformed 400, version other than HTTP/1.1 400, target 400, method other than GET 405),
// header syntax and repeats (400), Host (400), Upgrade (400), Connection (400),
// Sec-WebSocket-Version (426, also when missing), Sec-WebSocket-Key (400). r is reset on
// every call; after an error its fields hold whatever was parsed before the failure.
//
// The request-target may be origin-form ("/path?query") or, as RFC 6455 §4.1 allows, an
// absolute http or https URI with a non-empty path; anything else, and a fragment ('#'),
// is 400. Each of Host, Origin, Authorization, X-Client-Id, Sec-WebSocket-Key,
// Sec-WebSocket-Version and Sec-WebSocket-Protocol may appear once (400 when repeated);
// RFC 6455 §11.3.4 allows repeating Sec-WebSocket-Protocol, but the fields alias b and
// cannot join two lines without allocating, and browsers send one.
func ParseRequest(b []byte, maxHeaderBytes int, r *Request) (n int, err error) {
	r.Reset()
	if maxHeaderBytes <= 0 {
		maxHeaderBytes = DefaultMaxHeaderBytes
	}
	window := b
	if len(window) > maxHeaderBytes {
		window = window[:maxHeaderBytes]
	}
	end := bytes.Index(window, headEnd)
	if end < 0 {
		if len(b) >= maxHeaderBytes {
			return 0, ErrHeadTooLarge
		}
		return 0, ErrIncomplete
	}
	n = end + len(headEnd)
	// Every line of the head, the last one included, ends in CRLF, so the first CR of
	// the rest is always followed by another byte; a CR not followed by LF is a bare CR
	// inside a line.
	lines := b[:end+2]

	i := bytes.IndexByte(lines, '\r')
	if lines[i+1] != '\n' {
		return n, ErrBadRequestLine
	}
	if err := parseRequestLine(lines[:i], r); err != nil {
		return n, err
	}
	lines = lines[i+2:]

	var st headerState
	for len(lines) > 0 {
		i := bytes.IndexByte(lines, '\r')
		if lines[i+1] != '\n' {
			return n, ErrBadHeaderLine
		}
		if err := st.parseHeaderLine(lines[:i], r); err != nil {
			return n, err
		}
		lines = lines[i+2:]
	}

	switch {
	case len(r.Host) == 0:
		return n, ErrMissingHost
	case !st.upgrade:
		return n, ErrBadUpgrade
	case !st.connection:
		return n, ErrBadConnection
	case string(r.Version) != "13":
		return n, ErrUnsupportedVersion
	case !validKey(r.Key):
		return n, ErrBadKey
	}
	return n, nil
}

// parseRequestLine parses "METHOD SP request-target SP HTTP/1.1" (RFC 7230 §3.1.1) into r.
func parseRequestLine(line []byte, r *Request) error {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return ErrBadRequestLine
	}
	method, rest := line[:sp1], line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 || !isToken(method) {
		return ErrBadRequestLine
	}
	target, version := rest[:sp2], rest[sp2+1:]
	if string(version) != "HTTP/1.1" {
		if len(version) > 5 && string(version[:5]) == "HTTP/" && bytes.IndexByte(version, ' ') < 0 {
			return ErrHTTPVersion
		}
		return ErrBadRequestLine
	}
	r.Method, r.Target = method, target
	if err := splitTarget(target, r); err != nil {
		return err
	}
	if string(method) != "GET" {
		return ErrMethodNotAllowed
	}
	return nil
}

// splitTarget fills r.Path and r.RawQuery from an origin-form or absolute-form
// (http/https) request-target.
func splitTarget(target []byte, r *Request) error {
	for _, c := range target {
		// Controls are never valid in a request-target; RFC 6455 §3 forbids fragments.
		if c < 0x20 || c == 0x7f || c == '#' {
			return ErrBadTarget
		}
	}
	path := target
	if len(path) == 0 || path[0] != '/' {
		rest, ok := cutSchemeFold(path, "http://")
		if !ok {
			rest, ok = cutSchemeFold(path, "https://")
		}
		if !ok {
			return ErrBadTarget
		}
		// The authority ends at the path; it must be non-empty and the path must exist,
		// so that Path is never empty.
		slash := bytes.IndexByte(rest, '/')
		if q := bytes.IndexByte(rest, '?'); slash <= 0 || (q >= 0 && q < slash) {
			return ErrBadTarget
		}
		path = rest[slash:]
	}
	if q := bytes.IndexByte(path, '?'); q >= 0 {
		r.Path, r.RawQuery = path[:q], path[q+1:]
	} else {
		r.Path = path
	}
	return nil
}

// cutSchemeFold returns b after prefix, which is compared without regard to ASCII case.
func cutSchemeFold(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || !equalFold(b[:len(prefix)], prefix) {
		return nil, false
	}
	return b[len(prefix):], true
}

// Bits of headerState.seen for the headers that may appear only once.
const (
	seenHost = 1 << iota
	seenOrigin
	seenAuthorization
	seenClientID
	seenProtocol
	seenKey
	seenVersion
)

// headerState is what ParseRequest remembers across header lines beyond r itself.
type headerState struct {
	seen       uint8
	upgrade    bool // an Upgrade header listed "websocket"
	connection bool // a Connection header listed "Upgrade"
}

// parseHeaderLine parses one "name: value" line (RFC 7230 §3.2) and records the headers
// the upgrade needs.
func (st *headerState) parseHeaderLine(line []byte, r *Request) error {
	// The name is token characters up to the colon. This rejects an empty name, whitespace
	// before the colon, and a line that starts with whitespace, which is obsolete line
	// folding (RFC 7230 §3.2.4). An empty line cannot occur before the end of the head.
	colon := 0
	for colon < len(line) && httphead.OctetTypes[line[colon]].IsToken() {
		colon++
	}
	if colon == 0 || colon == len(line) || line[colon] != ':' {
		return ErrBadHeaderLine
	}
	name, raw := line[:colon], line[colon+1:]
	if !validFieldValue(raw) {
		return ErrBadHeaderLine
	}
	value := trimOWS(raw)

	var field *[]byte
	var bit uint8
	// The names of interest have distinct lengths, so one comparison decides.
	switch len(name) {
	case len("Host"):
		if equalFold(name, "Host") {
			field, bit = &r.Host, seenHost
		}
	case len("Origin"):
		if equalFold(name, "Origin") {
			field, bit = &r.Origin, seenOrigin
		}
	case len("Upgrade"):
		if equalFold(name, "Upgrade") && hasToken(value, "websocket") {
			st.upgrade = true
		}
	case len("Connection"):
		if equalFold(name, "Connection") && hasToken(value, "Upgrade") {
			st.connection = true
		}
	case len("X-Client-Id"):
		if equalFold(name, "X-Client-Id") {
			field, bit = &r.ClientID, seenClientID
		}
	case len("Authorization"):
		if equalFold(name, "Authorization") {
			field, bit = &r.Authorization, seenAuthorization
		}
	case len("Sec-WebSocket-Key"):
		if equalFold(name, "Sec-WebSocket-Key") {
			field, bit = &r.Key, seenKey
		}
	case len("Sec-WebSocket-Version"):
		if equalFold(name, "Sec-WebSocket-Version") {
			field, bit = &r.Version, seenVersion
		}
	case len("Sec-WebSocket-Protocol"):
		if equalFold(name, "Sec-WebSocket-Protocol") {
			field, bit = &r.Protocol, seenProtocol
		}
	}
	if field != nil {
		if st.seen&bit != 0 {
			return ErrDuplicateHeader
		}
		st.seen |= bit
		*field = value
	}
	return nil
}

// validFieldValue reports whether v holds only HTAB, visible ASCII and obs-text, the bytes
// a field value may contain (RFC 7230 §3.2): no other control, so no bare CR or LF.
func validFieldValue(v []byte) bool {
	const (
		lsb = 0x0101010101010101 // 0x01 in every byte
		msb = 0x8080808080808080 // 0x80 in every byte
	)
	// Test eight bytes at a time: (x - lsb*k) & ^x & msb is non-zero exactly when some
	// byte of x is below k (k <= 0x80), and a byte equal to 0x7f is a zero byte of
	// x ^ lsb*0x7f. A word that may hold a control, or a tab, is checked byte by byte.
	for len(v) >= 8 {
		x := binary.LittleEndian.Uint64(v)
		y := x ^ (lsb * 0x7f)
		if ((x-lsb*0x20)&^x|(y-lsb)&^y)&msb != 0 && !validFieldBytes(v[:8]) {
			return false
		}
		v = v[8:]
	}
	return validFieldBytes(v)
}

// validFieldBytes is validFieldValue one byte at a time.
func validFieldBytes(v []byte) bool {
	for _, c := range v {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list (RFC 7230 §7) holds token, compared
// without regard to ASCII case. Elements are compared whole, so "Upgradefoo" does not
// hold "Upgrade".
func hasToken(list []byte, token string) bool {
	for len(list) > 0 {
		var elem []byte
		if i := bytes.IndexByte(list, ','); i >= 0 {
			elem, list = list[:i], list[i+1:]
		} else {
			elem, list = list, nil
		}
		if equalFold(trimOWS(elem), token) {
			return true
		}
	}
	return false
}

// validKey reports whether key is the base64 encoding of 16 bytes (RFC 6455 §4.2.1 (5)).
func validKey(key []byte) bool {
	// 16 bytes encode to 24 characters with padding; 18 is base64's decoded length of 24.
	if len(key) != 24 {
		return false
	}
	var raw [18]byte
	n, err := base64.StdEncoding.Decode(raw[:], key)
	return err == nil && n == 16
}

// isToken reports whether b is a non-empty RFC 7230 token.
func isToken[S ~[]byte | ~string](b S) bool {
	if len(b) == 0 {
		return false
	}
	for i := range len(b) {
		if !httphead.OctetTypes[b[i]].IsToken() {
			return false
		}
	}
	return true
}

// trimOWS removes leading and trailing spaces and tabs (RFC 7230 §3.2.3).
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold reports whether b equals s without regard to ASCII case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// acceptGUID is the fixed suffix of the Sec-WebSocket-Accept computation (RFC 6455 §1.3).
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AppendAccept appends the "HTTP/1.1 101 Switching Protocols" response for r to dst
// (RFC 6455 §4.2.2): Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Accept computed
// from r.Key, and Sec-WebSocket-Protocol: protocol when protocol is non-empty. protocol
// should be one the client offered in r.Protocol; it must be a token (RFC 6455 §11.3.4),
// and a value that is not is left out, so a caller's bug cannot split the response.
// AppendAccept allocates nothing when dst has capacity for the response (at most 129
// bytes plus the protocol header).
func AppendAccept(dst []byte, r *Request, protocol string) []byte {
	var accept [28]byte // base64 of a 20-byte SHA-1 digest
	acceptKey(&accept, r.Key)
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\n"+
		"Upgrade: websocket\r\n"+
		"Connection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: "...)
	dst = append(dst, accept[:]...)
	dst = append(dst, "\r\n"...)
	if isToken(protocol) {
		dst = append(dst, "Sec-WebSocket-Protocol: "...)
		dst = append(dst, protocol...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// acceptKey computes Sec-WebSocket-Accept for key: base64(SHA-1(key + GUID)).
func acceptKey(dst *[28]byte, key []byte) {
	// A validated key is 24 bytes, so the concatenation fits the stack buffer; a longer
	// one from a caller that skipped validation still works, on the heap.
	var buf [24 + len(acceptGUID)]byte
	p := append(buf[:0], key...)
	p = append(p, acceptGUID...)
	sum := sha1.Sum(p)
	base64.StdEncoding.Encode(dst[:], sum[:])
}

// AppendReject appends a complete HTTP/1.1 error response for e to dst: the status line,
// Connection: close, Content-Type: text/plain; charset=utf-8, Content-Length, plus
// Sec-WebSocket-Version: 13 for 426 (RFC 6455 §4.2.2 (4)) and Allow: GET for 405
// (RFC 7231 §6.5.5), then extraHeaders, then the body e.Msg + "\n". Each of extraHeaders
// (nil is fine) is one "Name: value" without CRLF, appended verbatim, for example
// "Retry-After: 1" or "WWW-Authenticate: Bearer"; one that contains CR or LF is left out,
// so it cannot split the response. A Status outside 400-599 is written as 500, since a
// reject must be an error. The caller closes the connection after writing it.
// AppendReject allocates nothing when dst has capacity.
func AppendReject(dst []byte, e *HandshakeError, extraHeaders ...string) []byte {
	status := e.Status
	if status < 400 || status > 599 {
		status = 500
	}
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, statusText(status)...)
	dst = append(dst, "\r\nConnection: close\r\n"+
		"Content-Type: text/plain; charset=utf-8\r\n"+
		"Content-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(e.Msg)+1), 10)
	dst = append(dst, "\r\n"...)
	switch status {
	case 426:
		dst = append(dst, "Sec-WebSocket-Version: 13\r\n"...)
	case 405:
		dst = append(dst, "Allow: GET\r\n"...)
	}
	for _, h := range extraHeaders {
		if h == "" || containsCRLF(h) {
			continue
		}
		dst = append(dst, h...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	dst = append(dst, e.Msg...)
	return append(dst, '\n')
}

// containsCRLF reports whether s holds a CR or LF byte.
func containsCRLF(s string) bool {
	for i := range len(s) {
		if s[i] == '\r' || s[i] == '\n' {
			return true
		}
	}
	return false
}

// statusText is the reason phrase for the statuses a reject uses (net/http's texts, kept
// here so that codec does not import net/http).
func statusText(status int) string {
	switch status {
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 408:
		return "Request Timeout"
	case 426:
		return "Upgrade Required"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 503:
		return "Service Unavailable"
	}
	return "Error"
}
