package server

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestParseOp checks every way a client message can be wrong, with the exact error code
// of DESIGN.md's closed set, and that valid messages decode to the right fields.
func TestParseOp(t *testing.T) {
	long := strings.Repeat("c", 128)
	tests := []struct {
		name    string
		payload string
		code    string // "" means valid
		want    clientOp
	}{
		// Not a JSON object.
		{name: "not JSON", payload: `sub room`, code: errBadJSON},
		{name: "truncated object", payload: `{"op":"sub","channel":"a"`, code: errBadJSON},
		{name: "trailing garbage", payload: `{"op":"sub","channel":"a"} x`, code: errBadJSON},
		{name: "empty payload", payload: ``, code: errBadJSON},
		{name: "array", payload: `[{"op":"sub","channel":"a"}]`, code: errBadJSON},
		{name: "number", payload: `42`, code: errBadJSON},
		{name: "string", payload: `"sub"`, code: errBadJSON},
		{name: "boolean", payload: `true`, code: errBadJSON},
		{name: "null", payload: `null`, code: errBadJSON},
		{name: "null with spaces", payload: " \n null ", code: errBadJSON},

		// op.
		{name: "missing op", payload: `{"channel":"a"}`, code: errBadField},
		{name: "empty op", payload: `{"op":"","channel":"a"}`, code: errBadField},
		{name: "empty object", payload: `{}`, code: errBadField},
		{name: "unknown op", payload: `{"op":"subscribe","channel":"a"}`, code: errUnknownOp},
		{name: "unknown op publish", payload: `{"op":"publish","channel":"a","data":1}`, code: errUnknownOp},

		// channel presence.
		{name: "sub without channel", payload: `{"op":"sub"}`, code: errBadField},
		{name: "unsub without channel", payload: `{"op":"unsub"}`, code: errBadField},
		{name: "pub without channel", payload: `{"op":"pub","data":1}`, code: errBadField},
		{name: "sub empty channel", payload: `{"op":"sub","channel":""}`, code: errBadField},
		{name: "pub empty channel", payload: `{"op":"pub","channel":"","data":1}`, code: errBadField},

		// channel shape.
		{name: "channel star", payload: `{"op":"sub","channel":"a.*"}`, code: errBadChannel},
		{name: "channel gt", payload: `{"op":"sub","channel":"a.>"}`, code: errBadChannel},
		{name: "channel lone gt", payload: `{"op":"sub","channel":">"}`, code: errBadChannel},
		{name: "channel space", payload: `{"op":"sub","channel":"a b"}`, code: errBadChannel},
		{name: "channel tab", payload: `{"op":"sub","channel":"a\tb"}`, code: errBadChannel},
		{name: "channel leading dot", payload: `{"op":"sub","channel":".a"}`, code: errBadChannel},
		{name: "channel trailing dot", payload: `{"op":"sub","channel":"a."}`, code: errBadChannel},
		{name: "channel doubled dot", payload: `{"op":"sub","channel":"a..b"}`, code: errBadChannel},
		{name: "channel only dot", payload: `{"op":"sub","channel":"."}`, code: errBadChannel},
		{name: "channel 129 chars", payload: `{"op":"sub","channel":"` + long + `x"}`, code: errBadChannel},
		{name: "channel unicode", payload: `{"op":"sub","channel":"café"}`, code: errBadChannel},
		{name: "channel quote", payload: `{"op":"sub","channel":"a\"b"}`, code: errBadChannel},
		{name: "unsub bad channel", payload: `{"op":"unsub","channel":"a*"}`, code: errBadChannel},
		{name: "pub bad channel", payload: `{"op":"pub","channel":"a>","data":1}`, code: errBadChannel},

		// data.
		{name: "pub without data", payload: `{"op":"pub","channel":"a"}`, code: errBadField},
		{name: "send without data", payload: `{"op":"send","to":"bob"}`, code: errBadField},

		// to.
		{name: "send without to", payload: `{"op":"send","data":1}`, code: errBadField},
		{name: "send empty to", payload: `{"op":"send","to":"","data":1}`, code: errBadField},
		{name: "send to 129 bytes", payload: `{"op":"send","to":"` + strings.Repeat("b", 129) + `","data":1}`, code: errBadField},
		{name: "send to with newline", payload: `{"op":"send","to":"bo\nb","data":1}`, code: errBadField},
		{name: "send to with NUL", payload: `{"op":"send","to":"bo\u0000b","data":1}`, code: errBadField},
		{name: "send to with DEL", payload: `{"op":"send","to":"bo\u007fb","data":1}`, code: errBadField},

		// Valid.
		{name: "sub", payload: `{"op":"sub","channel":"room:1"}`, want: clientOp{Op: "sub", Channel: "room:1"}},
		{name: "sub 128 chars", payload: `{"op":"sub","channel":"` + long + `"}`, want: clientOp{Op: "sub", Channel: long}},
		{name: "sub every allowed char", payload: `{"op":"sub","channel":"AZaz09_-:@/=+.x"}`, want: clientOp{Op: "sub", Channel: "AZaz09_-:@/=+.x"}},
		{name: "unsub", payload: `{"op":"unsub","channel":"a.b"}`, want: clientOp{Op: "unsub", Channel: "a.b"}},
		{name: "pub object", payload: `{"op":"pub","channel":"a","data":{"k":[1,"x"]}}`, want: clientOp{Op: "pub", Channel: "a", Data: json.RawMessage(`{"k":[1,"x"]}`)}},
		{name: "pub null data", payload: `{"op":"pub","channel":"a","data":null}`, want: clientOp{Op: "pub", Channel: "a", Data: json.RawMessage(`null`)}},
		{name: "pub string data", payload: `{"op":"pub","channel":"a","data":"hi"}`, want: clientOp{Op: "pub", Channel: "a", Data: json.RawMessage(`"hi"`)}},
		{name: "send", payload: `{"op":"send","to":"bob","data":7}`, want: clientOp{Op: "send", To: "bob", Data: json.RawMessage(`7`)}},
		{name: "send to 128 bytes unicode", payload: `{"op":"send","to":"` + strings.Repeat("é", 64) + `","data":7}`, want: clientOp{Op: "send", To: strings.Repeat("é", 64), Data: json.RawMessage(`7`)}},
		{name: "send to with spaces and dots", payload: `{"op":"send","to":"a b.*>","data":7}`, want: clientOp{Op: "send", To: "a b.*>", Data: json.RawMessage(`7`)}},
		{name: "leading whitespace", payload: " \t\r\n{\"op\":\"sub\",\"channel\":\"a\"}", want: clientOp{Op: "sub", Channel: "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, perr := parseOp([]byte(tt.payload))
			if tt.code != "" {
				if perr == nil {
					t.Fatalf("parseOp(%q) = %+v, nil; want error %q", tt.payload, got, tt.code)
				}
				if perr.code != tt.code {
					t.Fatalf("parseOp(%q) code = %q (%s), want %q", tt.payload, perr.code, perr.msg, tt.code)
				}
				if perr.msg == "" {
					t.Fatalf("parseOp(%q): error %q has no message", tt.payload, perr.code)
				}
				return
			}
			if perr != nil {
				t.Fatalf("parseOp(%q) = error %q (%s), want valid", tt.payload, perr.code, perr.msg)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("parseOp(%q) = %+v, want %+v", tt.payload, got, tt.want)
			}
		})
	}
}

// TestParseOpDataDoesNotAliasPayload checks that the decoded data survives the reuse of the
// frame buffer: the loop hands the op to the publisher goroutine after the callback returns.
func TestParseOpDataDoesNotAliasPayload(t *testing.T) {
	payload := []byte(`{"op":"pub","channel":"a","data":{"v":"original"}}`)
	op, perr := parseOp(payload)
	if perr != nil {
		t.Fatalf("parseOp: %s", perr.msg)
	}
	for i := range payload {
		payload[i] = 'X'
	}
	if got := string(op.Data); got != `{"v":"original"}` {
		t.Fatalf("data after the payload was overwritten = %q", got)
	}
}

const protoTraceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

// TestEnvelopes decodes every server-to-client envelope and compares it, field for field,
// with DESIGN.md's wire protocol.
func TestEnvelopes(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want map[string]any
	}{
		{
			name: "welcome",
			got:  appendWelcome(nil, `al"ice\`, "node-1", 30000),
			want: map[string]any{"type": "welcome", "clientId": `al"ice\`, "node": "node-1", "heartbeatMs": 30000.0},
		},
		{
			name: "welcome unicode id",
			got:  appendWelcome([]byte("garbage to be kept"), "é😀\u2028", "n", 1500),
			want: map[string]any{"type": "welcome", "clientId": "é😀\u2028", "node": "n", "heartbeatMs": 1500.0},
		},
		{
			name: "subscribed",
			got:  appendSubscribed(nil, "room:1/a=b+c@d.e_f-g"),
			want: map[string]any{"type": "subscribed", "channel": "room:1/a=b+c@d.e_f-g"},
		},
		{
			name: "unsubscribed",
			got:  appendUnsubscribed(nil, "room:1"),
			want: map[string]any{"type": "unsubscribed", "channel": "room:1"},
		},
		{
			name: "message",
			got:  appendMessage(nil, "room:1", []byte(`{"k":[1,"x",null]}`), ""),
			want: map[string]any{"type": "message", "channel": "room:1", "data": map[string]any{"k": []any{1.0, "x", nil}}},
		},
		{
			name: "message with traceparent",
			got:  appendMessage(nil, "room:1", []byte(`"hi"`), protoTraceparent),
			want: map[string]any{"type": "message", "channel": "room:1", "data": "hi", "traceparent": protoTraceparent},
		},
		{
			name: "direct from a client",
			got:  appendDirect(nil, `b"ob`, []byte(`12`), ""),
			want: map[string]any{"type": "direct", "from": `b"ob`, "data": 12.0},
		},
		{
			name: "direct from admin",
			got:  appendDirect(nil, "", []byte(`[true]`), ""),
			want: map[string]any{"type": "direct", "data": []any{true}},
		},
		{
			name: "direct with traceparent",
			got:  appendDirect(nil, "bob", []byte(`null`), protoTraceparent),
			want: map[string]any{"type": "direct", "from": "bob", "data": nil, "traceparent": protoTraceparent},
		},
		{
			name: "broadcast",
			got:  appendBroadcast(nil, []byte(`{"a":"b"}`), ""),
			want: map[string]any{"type": "broadcast", "data": map[string]any{"a": "b"}},
		},
		{
			name: "broadcast with traceparent",
			got:  appendBroadcast(nil, []byte(`1.5`), protoTraceparent),
			want: map[string]any{"type": "broadcast", "data": 1.5, "traceparent": protoTraceparent},
		},
		{
			name: "error",
			got:  appendError(nil, errBadChannel, "bad \"channel\"\n\x01"),
			want: map[string]any{"type": "error", "code": "bad_channel", "message": "bad \"channel\"\n\x01"},
		},
		{
			name: "shutdown",
			got:  appendShutdown(nil, 2000),
			want: map[string]any{"type": "SERVER_SHUTDOWN", "reconnectInMs": 2000.0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.got
			if p := []byte("garbage to be kept"); bytes.HasPrefix(got, p) {
				got = got[len(p):]
			}
			var m map[string]any
			if err := json.Unmarshal(got, &m); err != nil {
				t.Fatalf("envelope %s is not JSON: %v", got, err)
			}
			if !reflect.DeepEqual(m, tt.want) {
				t.Fatalf("envelope %s\n decodes to %#v\n want       %#v", got, m, tt.want)
			}
		})
	}
}

// TestAppendJSONString compares appendJSONString with encoding/json on strings that need
// escaping: both must decode to the same string, and the output must be valid JSON.
func TestAppendJSONString(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // what the JSON decodes to
	}{
		{name: "empty", in: "", want: ""},
		{name: "plain", in: "alice", want: "alice"},
		{name: "quotes", in: `say "hi"`, want: `say "hi"`},
		{name: "backslash", in: `a\b\\`, want: `a\b\\`},
		{name: "newline tab cr", in: "a\nb\tc\rd", want: "a\nb\tc\rd"},
		{name: "every control char", in: "\x00\x01\x02\x07\x08\x0b\x0c\x1b\x1f", want: "\x00\x01\x02\x07\x08\x0b\x0c\x1b\x1f"},
		{name: "DEL", in: "a\x7fb", want: "a\x7fb"},
		{name: "html", in: "<script>&</script>", want: "<script>&</script>"},
		{name: "unicode", in: "héllo wörld ✓ 😀", want: "héllo wörld ✓ 😀"},
		{name: "line separators", in: "a\u2028b\u2029c", want: "a\u2028b\u2029c"},
		{name: "invalid byte", in: "a\xffb", want: "a\uFFFDb"},
		{name: "two invalid bytes", in: "\xfe\xff", want: "\uFFFD\uFFFD"},
		{name: "truncated rune", in: "a\xe2\x9c", want: "a\uFFFD\uFFFD"},
		{name: "lone continuation", in: "\x80x", want: "\uFFFDx"},
		{name: "surrogate half", in: "\xed\xa0\x80", want: "\uFFFD\uFFFD\uFFFD"},
		{name: "overlong slash", in: "\xc0\xaf", want: "\uFFFD\uFFFD"},
		{name: "literal U+FFFD", in: "\uFFFD", want: "\uFFFD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			protoCheckJSONString(t, tt.in)
			got := appendJSONString(nil, tt.in)
			var s string
			if err := json.Unmarshal(got, &s); err != nil {
				t.Fatalf("appendJSONString(%q) = %s: not a JSON string: %v", tt.in, got, err)
			}
			if s != tt.want {
				t.Fatalf("appendJSONString(%q) decodes to %q, want %q", tt.in, s, tt.want)
			}
		})
	}

	// Random bytes, biased towards the interesting ones.
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("a\"\\\x00\x1f\x7f\x80\xbf\xc3\xa9\xe2\x9c\x93\xf0\x9f\x98\x80\xff ")
	for range 2000 {
		b := make([]byte, rng.IntN(24))
		for i := range b {
			if rng.IntN(4) == 0 {
				b[i] = byte(rng.IntN(256))
			} else {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			}
		}
		protoCheckJSONString(t, string(b))
	}
}

// protoCheckJSONString checks appendJSONString(s) against json.Marshal(s), appending to a
// non-empty buffer to catch writes outside the appended region.
func protoCheckJSONString(t *testing.T, s string) {
	t.Helper()
	prefix := []byte("prefix:")
	out := appendJSONString(append([]byte(nil), prefix...), s)
	if !bytes.HasPrefix(out, prefix) {
		t.Fatalf("appendJSONString(%q) clobbered the buffer: %q", s, out)
	}
	got := out[len(prefix):]
	if !json.Valid(got) || !utf8.Valid(got) {
		t.Fatalf("appendJSONString(%q) = %q: not valid JSON text", s, got)
	}
	ref, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("json.Marshal(%q): %v", s, err)
	}
	var a, b string
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("appendJSONString(%q) = %q: %v", s, got, err)
	}
	if err := json.Unmarshal(ref, &b); err != nil {
		t.Fatalf("json.Marshal(%q) = %q: %v", s, ref, err)
	}
	if a != b {
		t.Fatalf("appendJSONString(%q) decodes to %q; encoding/json gives %q", s, a, b)
	}
}

func TestValidTraceparent(t *testing.T) {
	tests := []struct {
		name string
		tp   string
		want bool
	}{
		{name: "W3C example", tp: protoTraceparent, want: true},
		{name: "unsampled", tp: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", want: true},
		{name: "empty", tp: "", want: false},
		{name: "upper case trace id", tp: "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", want: false},
		{name: "upper case parent id", tp: "00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01", want: false},
		{name: "short trace id", tp: "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01", want: false},
		{name: "missing flags", tp: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", want: false},
		{name: "one char short", tp: protoTraceparent[:54], want: false},
		{name: "quoted", tp: `"` + protoTraceparent + `"`, want: false},
		{name: "quote inside", tp: "00-0af7651916cd43dd8448eb211c8031\"c-b7ad6b7169203331-01", want: false},
		{name: "backslash inside", tp: "00-0af7651916cd43dd8448eb211c8031\\c-b7ad6b7169203331-01", want: false},
		{name: "spaces", tp: "00 0af7651916cd43dd8448eb211c80319c b7ad6b7169203331 01", want: false},
		{name: "underscores", tp: "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01", want: false},
		{name: "non-hex", tp: "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01", want: false},
		{name: "too long", tp: protoTraceparent + "-" + strings.Repeat("a", 100), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := validTraceparent(tt.tp); got != tt.want {
				t.Fatalf("validTraceparent(%q) = %v, want %v", tt.tp, got, tt.want)
			}
		})
	}
}
