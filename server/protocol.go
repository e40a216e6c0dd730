package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/wsreactor/wsreactor/fanout"
)

// Error codes of the wire protocol's error frame: DESIGN.md's closed set.
const (
	errBadJSON     = "bad_json"
	errUnknownOp   = "unknown_op"
	errBadField    = "bad_field"
	errBadChannel  = "bad_channel"
	errForbidden   = "forbidden"
	errRateLimited = "rate_limited"
	errTooLarge    = "too_large"
)

// clientOp is one decoded client message. Data is a copy (json.RawMessage copies), so
// it may outlive the frame, as a publish does.
type clientOp struct {
	Op      string          `json:"op"`
	Channel string          `json:"channel"`
	To      string          `json:"to"`
	Data    json.RawMessage `json:"data"`
}

// opError is a protocol-level mistake answered with an error frame; the socket stays open.
type opError struct{ code, msg string }

// parseOp decodes and checks one client message. The checks that need server state
// (subscription limits, channel permissions) are the caller's.
func parseOp(payload []byte) (clientOp, *opError) {
	var op clientOp
	if err := json.Unmarshal(payload, &op); err != nil {
		if field, ok := wrongFieldType(err); ok {
			return op, &opError{errBadField, field + " has the wrong type"}
		}
		return op, &opError{errBadJSON, "message is not a JSON object: " + err.Error()}
	}
	// json.Unmarshal accepts a top-level null into a struct; it is not an object either.
	if bytes.TrimLeft(payload, " \t\r\n")[0] != '{' {
		return op, &opError{errBadJSON, "message is not a JSON object"}
	}
	switch op.Op {
	case "sub", "unsub":
		if op.Channel == "" {
			return op, &opError{errBadField, `"channel" is required`}
		}
		if !fanout.ValidChannel(op.Channel) {
			return op, &opError{errBadChannel, "invalid channel name"}
		}
	case "pub":
		if op.Channel == "" {
			return op, &opError{errBadField, `"channel" is required`}
		}
		if !fanout.ValidChannel(op.Channel) {
			return op, &opError{errBadChannel, "invalid channel name"}
		}
		if len(op.Data) == 0 {
			return op, &opError{errBadField, `"data" is required`}
		}
	case "send":
		if op.To == "" {
			return op, &opError{errBadField, `"to" is required`}
		}
		if !validIdentity(op.To) {
			return op, &opError{errBadField, `"to" is not a valid client identity`}
		}
		if len(op.Data) == 0 {
			return op, &opError{errBadField, `"data" is required`}
		}
	case "":
		return op, &opError{errBadField, `"op" is required`}
	default:
		return op, &opError{errUnknownOp, "unknown op"}
	}
	return op, nil
}

// maxIdentityLen bounds a client identity, which becomes a map key on every node holding it.
const maxIdentityLen = 128

// validIdentity reports whether id is usable as a client identity: 1-128 bytes of valid
// UTF-8 without control characters.
func validIdentity(id string) bool {
	if len(id) == 0 || len(id) > maxIdentityLen || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// validTraceparent accepts a W3C trace-context traceparent (version "00"-"fe", a non-zero
// 32-hex trace id, a non-zero 16-hex parent id, 2-hex flags, lower case) and nothing else,
// so the value can be echoed into JSON without escaping. A header that fails is dropped,
// as the W3C spec asks of a receiver.
func validTraceparent(tp string) bool {
	if len(tp) != 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' || tp[:2] == "ff" {
		return false
	}
	for i, part := range []string{tp[:2], tp[3:35], tp[36:52], tp[53:]} {
		zero := true
		for j := 0; j < len(part); j++ {
			c := part[j]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
			zero = zero && c == '0'
		}
		if zero && (i == 1 || i == 2) {
			return false
		}
	}
	return true
}

// appendJSONString appends s as a JSON string: quotes, backslashes and control characters
// escaped, invalid UTF-8 replaced with U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// Server-to-client envelopes, exactly as DESIGN.md writes them.

func appendWelcome(dst []byte, clientID, node string, heartbeatMs int64) []byte {
	dst = append(dst, `{"type":"welcome","clientId":`...)
	dst = appendJSONString(dst, clientID)
	dst = append(dst, `,"node":`...)
	dst = appendJSONString(dst, node)
	dst = append(dst, `,"heartbeatMs":`...)
	dst = strconv.AppendInt(dst, heartbeatMs, 10)
	return append(dst, '}')
}

// Channel names are checked against validChannel before they reach an envelope, and that
// charset needs no JSON escaping.
func appendSubscribed(dst []byte, channel string) []byte {
	return append(append(append(dst, `{"type":"subscribed","channel":"`...), channel...), `"}`...)
}

func appendUnsubscribed(dst []byte, channel string) []byte {
	return append(append(append(dst, `{"type":"unsubscribed","channel":"`...), channel...), `"}`...)
}

func appendError(dst []byte, code, msg string) []byte {
	dst = append(dst, `{"type":"error","code":"`...)
	dst = append(dst, code...)
	dst = append(dst, `","message":`...)
	dst = appendJSONString(dst, msg)
	return append(dst, '}')
}

func appendTrace(dst []byte, traceparent string) []byte {
	if traceparent == "" {
		return dst
	}
	return append(append(append(dst, `,"traceparent":"`...), traceparent...), '"')
}

func appendMessage(dst []byte, channel string, data []byte, traceparent string) []byte {
	dst = append(dst, `{"type":"message","channel":"`...)
	dst = append(dst, channel...)
	dst = append(dst, `","data":`...)
	dst = append(dst, data...)
	return append(appendTrace(dst, traceparent), '}')
}

func appendDirect(dst []byte, from string, data []byte, traceparent string) []byte {
	dst = append(dst, `{"type":"direct"`...)
	if from != "" {
		dst = append(dst, `,"from":`...)
		dst = appendJSONString(dst, from)
	}
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	return append(appendTrace(dst, traceparent), '}')
}

func appendBroadcast(dst []byte, data []byte, traceparent string) []byte {
	dst = append(dst, `{"type":"broadcast","data":`...)
	dst = append(dst, data...)
	return append(appendTrace(dst, traceparent), '}')
}

func appendShutdown(dst []byte, reconnectInMs int64) []byte {
	dst = append(dst, `{"type":"SERVER_SHUTDOWN","reconnectInMs":`...)
	dst = strconv.AppendInt(dst, reconnectInMs, 10)
	return append(dst, '}')
}

// compactJSON validates data as one JSON value and returns it without insignificant
// whitespace, so it can be spliced into an envelope. It returns nil when data is not JSON.
func compactJSON(data []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return nil
	}
	return buf.Bytes()
}

// wrongFieldType reports whether err is a JSON object's field of the wrong type (a
// number where a string belongs): the message is JSON, so that is bad_field, not
// bad_json. field is the field's name, quoted. A non-object (an array or a string
// decoded into the struct) has no field name and stays bad_json.
func wrongFieldType(err error) (field string, ok bool) {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return strconv.Quote(te.Field), true
	}
	return "", false
}
