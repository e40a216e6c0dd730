package codec_test

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/wsreactor/wsreactor/codec"
)

// wireCodeRanges lists the close codes a peer may send, written out independently of
// ValidOnWire: RFC 6455 §7.4.1 (1000-1003, 1007-1011), IANA's later 1012-1014, and the
// §7.4.2 ranges for libraries and applications (3000-4999).
var wireCodeRanges = [][2]int{
	{1000, 1003},
	{1007, 1014},
	{3000, 4999},
}

func TestCloseCodeValidOnWire(t *testing.T) {
	valid := make([]bool, 1<<16)
	for _, r := range wireCodeRanges {
		for c := r[0]; c <= r[1]; c++ {
			valid[c] = true
		}
	}
	for c := range 1 << 16 {
		if got := codec.CloseCode(c).ValidOnWire(); got != valid[c] {
			t.Errorf(
				"CloseCode(%d).ValidOnWire() = %v, want %v",
				c, got, valid[c])
		}
	}
}

func TestNamedCloseCodes(t *testing.T) {
	tests := []struct {
		code      codec.CloseCode
		want      uint16
		validWire bool
	}{
		{
			code:      codec.CloseNormal,
			want:      1000,
			validWire: true,
		},
		{
			code:      codec.CloseGoingAway,
			want:      1001,
			validWire: true,
		},
		{
			code:      codec.CloseProtocolError,
			want:      1002,
			validWire: true,
		},
		{
			code:      codec.CloseUnsupportedData,
			want:      1003,
			validWire: true,
		},
		{
			code:      codec.CloseNoStatus,
			want:      1005,
			validWire: false,
		},
		{
			code:      codec.CloseAbnormal,
			want:      1006,
			validWire: false,
		},
		{
			code:      codec.CloseInvalidPayload,
			want:      1007,
			validWire: true,
		},
		{
			code:      codec.ClosePolicy,
			want:      1008,
			validWire: true,
		},
		{
			code:      codec.CloseTooBig,
			want:      1009,
			validWire: true,
		},
		{
			code:      codec.CloseInternal,
			want:      1011,
			validWire: true,
		},
		{
			code:      codec.CloseSlowConsumer,
			want:      4000,
			validWire: true,
		},
		{
			code:      codec.CloseIdleTimeout,
			want:      4001,
			validWire: true,
		},
		{
			code:      codec.CloseTokenExpired,
			want:      4003,
			validWire: true,
		},
		{
			code:      codec.CloseRateLimited,
			want:      4029,
			validWire: true,
		},
	}
	for _, tt := range tests {
		if uint16(tt.code) != tt.want || tt.code.ValidOnWire() != tt.validWire {
			t.Errorf(
				"code %d: ValidOnWire = %v; want code %d, ValidOnWire %v",
				tt.code, tt.code.ValidOnWire(), tt.want, tt.validWire)
		}
	}
}

func TestParseClose(t *testing.T) {
	tests := []struct {
		name       string
		payload    string
		wantCode   codec.CloseCode
		wantReason string
		wantErr    error
	}{
		{
			name:     "empty",
			payload:  "",
			wantCode: codec.CloseNoStatus,
		},
		{
			name:    "one byte",
			payload: "\x03",
			wantErr: codec.ErrCloseLength,
		},
		{
			name:     "code only",
			payload:  closePayload(1000, ""),
			wantCode: codec.CloseNormal,
		},
		{
			name:       "code and reason",
			payload:    closePayload(4999, "h\xc3\xa9"),
			wantCode:   4999,
			wantReason: "h\xc3\xa9",
		},
		{
			name:    "reserved code 1005",
			payload: closePayload(1005, ""),
			wantErr: codec.ErrCloseCode,
		},
		{
			name:    "code 5000",
			payload: closePayload(5000, "x"),
			wantErr: codec.ErrCloseCode,
		},
		{
			name:    "reason not UTF-8",
			payload: closePayload(1000, "\xc0\x80"),
			wantErr: codec.ErrCloseReasonUTF8,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := []byte(tt.payload)
			code, reason, err := codec.ParseClose(p)
			if err != tt.wantErr {
				t.Fatalf(
					"err = %v, want %v",
					err, tt.wantErr)
			}
			if code != tt.wantCode || string(reason) != tt.wantReason {
				t.Fatalf(
					"code, reason = %d, %q; want %d, %q",
					code, reason, tt.wantCode, tt.wantReason)
			}
			if len(reason) > 0 && &reason[0] != &p[2] {
				t.Fatal("reason does not alias the payload")
			}
		})
	}
}

func TestAppendCloseRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		code   codec.CloseCode
		reason string
	}{
		{
			name: "normal, no reason",
			code: codec.CloseNormal,
		},
		{
			name:   "going away",
			code:   codec.CloseGoingAway,
			reason: "server drain",
		},
		{
			name:   "private code, multi-byte reason",
			code:   codec.CloseRateLimited,
			reason: "zu schnell \xe2\x8f\xb1",
		},
		{
			name:   "reason exactly 123 bytes",
			code:   codec.CloseTooBig,
			reason: strings.Repeat("m", 123),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := codec.AppendClose([]byte("dst"), tt.code, tt.reason)
			if string(frame[:3]) != "dst" {
				t.Fatalf(
					"AppendClose clobbered dst: %q",
					frame[:3])
			}
			frame = frame[3:]
			h, err := ws.ReadHeader(bytes.NewReader(frame))
			if err != nil {
				t.Fatal(err)
			}
			want := ws.Header{Fin: true, OpCode: ws.OpClose, Length: int64(2 + len(tt.reason))}
			if h != want || len(frame) != 2+int(h.Length) {
				t.Fatalf(
					"header = %+v (frame %d bytes), want %+v",
					h, len(frame), want)
			}
			code, reason, err := codec.ParseClose(frame[2:])
			if err != nil || code != tt.code || string(reason) != tt.reason {
				t.Fatalf(
					"ParseClose = %d, %q, %v; want %d, %q, nil",
					code, reason, err, tt.code, tt.reason)
			}
		})
	}
}

// longestBoundaryPrefix returns the longest prefix of s of at most n bytes that ends at
// a rune boundary, found by walking s rune by rune.
func longestBoundaryPrefix(s string, n int) string {
	end := 0
	for i, r := range s {
		if i+utf8.RuneLen(r) > n {
			break
		}
		end = i + utf8.RuneLen(r)
	}
	return s[:end]
}

func TestAppendCloseTruncatesReason(t *testing.T) {
	const maxReason = codec.MaxControlPayload - 2 // the 2-byte code takes the rest
	tests := []struct {
		name   string
		reason string
	}{
		{
			name:   "124 ASCII bytes",
			reason: strings.Repeat("a", 124),
		},
		{
			name:   "300 ASCII bytes",
			reason: strings.Repeat("a", 300),
		},
		{
			name:   "2-byte runes, boundary at 122",
			reason: strings.Repeat("\xc3\xa9", 100),
		},
		{
			name:   "2-byte runes, boundary at 123",
			reason: "a" + strings.Repeat("\xc3\xa9", 100),
		},
		{
			name:   "3-byte runes, boundary at 123",
			reason: strings.Repeat("\xe2\x82\xac", 60),
		},
		{
			name:   "3-byte runes, boundary at 121",
			reason: "a" + strings.Repeat("\xe2\x82\xac", 60),
		},
		{
			name:   "3-byte runes, boundary at 122",
			reason: "ab" + strings.Repeat("\xe2\x82\xac", 60),
		},
		{
			name:   "4-byte runes, boundary at 120",
			reason: strings.Repeat("\xf0\x9f\x98\x80", 40),
		},
		{
			name:   "4-byte runes, boundary at 121",
			reason: "a" + strings.Repeat("\xf0\x9f\x98\x80", 40),
		},
		{
			name:   "4-byte runes, boundary at 122",
			reason: "ab" + strings.Repeat("\xf0\x9f\x98\x80", 40),
		},
		{
			name:   "4-byte runes, boundary at 123",
			reason: "abc" + strings.Repeat("\xf0\x9f\x98\x80", 40),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := codec.AppendClose(nil, codec.CloseGoingAway, tt.reason)
			if int(frame[1]) != len(frame)-2 || len(frame)-2 > codec.MaxControlPayload {
				t.Fatalf(
					"length byte %d, payload %d bytes; want equal and at most %d",
					frame[1], len(frame)-2, codec.MaxControlPayload)
			}
			code, reason, err := codec.ParseClose(frame[2:])
			if err != nil || code != codec.CloseGoingAway {
				t.Fatalf(
					"ParseClose = %d, %v; want %d, nil",
					code, err, codec.CloseGoingAway)
			}
			if want := longestBoundaryPrefix(tt.reason, maxReason); string(reason) != want {
				t.Fatalf(
					"reason = %d bytes %q, want %d bytes %q",
					len(reason), reason, len(want), want)
			}
			// A client would accept it too.
			var d codec.Decoder
			masked := codec.AppendClientFrame(nil, codec.OpClose, true, frame[2:], testMask)
			if _, _, err := d.Decode(masked, 0); err != nil {
				t.Fatalf(
					"Decoder rejects the truncated close: %v",
					err)
			}
		})
	}
}

func TestAppendCloseZeroCode(t *testing.T) {
	got := codec.AppendClose([]byte{0xAA}, 0, "ignored")
	if want := []byte{0xAA, 0x88, 0x00}; !bytes.Equal(got, want) {
		t.Fatalf(
			"AppendClose(code 0) = % x, want % x",
			got, want)
	}
	code, _, err := codec.ParseClose(got[3:])
	if err != nil || code != codec.CloseNoStatus {
		t.Fatalf(
			"ParseClose(empty) = %d, %v; want %d, nil",
			code, err, codec.CloseNoStatus)
	}
}
