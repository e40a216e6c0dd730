package codec

import "encoding/binary"

// CloseCode is a WebSocket close status code (RFC 6455 §7.4). The server's own codes in the
// 4000-4999 private range are documented in DESIGN.md.
type CloseCode uint16

// Close codes the server sends or recognises.
const (
	CloseNormal          CloseCode = 1000 // normal closure
	CloseGoingAway       CloseCode = 1001 // server drain
	CloseProtocolError   CloseCode = 1002 // protocol violation
	CloseUnsupportedData CloseCode = 1003 // data type the endpoint cannot accept
	CloseNoStatus        CloseCode = 1005 // never on the wire: close frame without a code
	CloseAbnormal        CloseCode = 1006 // never on the wire: connection lost without a close frame
	CloseInvalidPayload  CloseCode = 1007 // invalid UTF-8 in a text message
	ClosePolicy          CloseCode = 1008 // policy violation
	CloseTooBig          CloseCode = 1009 // message over -max-message-bytes
	CloseInternal        CloseCode = 1011 // unexpected server condition
	CloseSlowConsumer    CloseCode = 4000 // outbound bytes over -send-buffer-limit
	CloseIdleTimeout     CloseCode = 4001 // no frame or pong within -idle-timeout
	CloseTokenExpired    CloseCode = 4003 // JWT exp passed while connected
	CloseRateLimited     CloseCode = 4029 // inbound messages over -client-rate
)

// ValidOnWire reports whether c may appear in a close frame a peer sends (RFC 6455 §7.4.1
// and §7.4.2, plus 1012-1014 registered with IANA since). 1004-1006 and 1015 are reserved
// for local use, 1016-2999 are unassigned protocol codes, below 1000 is unused.
func (c CloseCode) ValidOnWire() bool {
	switch {
	case c >= 1000 && c <= 1003, c >= 1007 && c <= 1014:
		return true
	case c >= 3000 && c <= 4999:
		return true
	}
	return false
}

// ParseClose validates the payload of a close frame (RFC 6455 §5.5.1) and returns its code
// and reason. An empty payload yields CloseNoStatus. The reason aliases p.
func ParseClose(p []byte) (code CloseCode, reason []byte, err error) {
	switch len(p) {
	case 0:
		return CloseNoStatus, nil, nil
	case 1:
		return 0, nil, ErrCloseLength
	}
	code = CloseCode(binary.BigEndian.Uint16(p))
	if !code.ValidOnWire() {
		return 0, nil, ErrCloseCode
	}
	reason = p[2:]
	if !ValidUTF8(reason) {
		return 0, nil, ErrCloseReasonUTF8
	}
	return code, reason, nil
}

// AppendClose appends an unmasked (server) close frame with code and reason to dst. A code
// of 0 writes a close frame with an empty payload. The reason is cut to fit the 125-byte
// control-frame limit (RFC 6455 §5.5); the caller passes valid UTF-8.
func AppendClose(dst []byte, code CloseCode, reason string) []byte {
	if code == 0 {
		return append(dst, 0x88, 0x00)
	}
	if len(reason) > MaxControlPayload-2 {
		// Cut at a rune boundary so the truncated reason stays valid UTF-8.
		cut := MaxControlPayload - 2
		for cut > 0 && reason[cut]&0xC0 == 0x80 {
			cut--
		}
		reason = reason[:cut]
	}
	dst = append(dst, 0x88, byte(2+len(reason)), byte(code>>8), byte(code))
	return append(dst, reason...)
}
