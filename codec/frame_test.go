package codec_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"

	"github.com/gobwas/ws"

	"github.com/wsreactor/wsreactor/codec"
)

// testMask masks most test frames. Its four bytes differ, so a mask applied from the wrong
// offset or in the wrong byte order shows in the payload.
var testMask = [4]byte{0x37, 0xFA, 0x21, 0x3D}

// maskedFrame builds a client frame masked with testMask.
func maskedFrame(op codec.OpCode, fin bool, payload string) []byte {
	return codec.AppendClientFrame(nil, op, fin, []byte(payload), testMask)
}

// withBits returns a copy of frame with bits set in its first header byte.
func withBits(frame []byte, bits byte) []byte {
	out := bytes.Clone(frame)
	out[0] |= bits
	return out
}

// rawHeader returns the two fixed header bytes followed by ext (the extended length, if
// any), without a mask key: the shortest input that proves a header-level violation.
func rawHeader(b0, b1 byte, ext ...byte) []byte {
	return append([]byte{b0, b1}, ext...)
}

// len64 returns the 8-byte extended length field for n.
func len64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// closePayload returns a close frame payload: code in network byte order, then reason.
func closePayload(code uint16, reason string) string {
	return string(binary.BigEndian.AppendUint16(nil, code)) + reason
}

// frameOf is shorthand for an expected decoded frame.
func frameOf(op, message codec.OpCode, fin bool, payload string) codec.Frame {
	return codec.Frame{Op: op, Message: message, Fin: fin, Payload: []byte(payload)}
}

// checkProtocolError fails t unless err is want (errors.Is) and carries code (errors.As).
func checkProtocolError(t *testing.T, err, want error, code codec.CloseCode) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf(
			"err = %v, want %v",
			err, want)
	}
	var pe *codec.ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf(
			"err = %v (%T) is not a *codec.ProtocolError",
			err, err)
	}
	if pe.Code != code {
		t.Fatalf(
			"close code = %d, want %d",
			pe.Code, code)
	}
}

func sameFrame(got, want codec.Frame) bool {
	return got.Op == want.Op && got.Message == want.Message && got.Fin == want.Fin &&
		bytes.Equal(got.Payload, want.Payload)
}

func fmtFrame(f codec.Frame) string {
	return fmt.Sprintf("{Op:%v Message:%v Fin:%v Payload:%q}", f.Op, f.Message, f.Fin, f.Payload)
}

type decodeErrorCase struct {
	name     string
	max      int64    // Decoder.MaxMessageBytes
	before   [][]byte // frames that must decode first (e.g. to open a fragmented message)
	input    []byte   // the frame, or the header prefix, that must fail
	wantErr  error
	wantCode codec.CloseCode
}

func decodeErrorCases() []decodeErrorCase {
	const (
		protocol = codec.CloseProtocolError
		utf8Code = codec.CloseInvalidPayload
		tooBig   = codec.CloseTooBig
	)
	tests := []decodeErrorCase{
		{
			name:     "unmasked text frame",
			input:    codec.AppendFrame(nil, codec.OpText, true, []byte("hello")),
			wantErr:  codec.ErrUnmasked,
			wantCode: protocol,
		},
		{
			name:     "unmasked header only",
			input:    rawHeader(0x82, 0x05),
			wantErr:  codec.ErrUnmasked,
			wantCode: protocol,
		},
		{
			name:     "unmasked ping",
			input:    codec.AppendFrame(nil, codec.OpPing, true, nil),
			wantErr:  codec.ErrUnmasked,
			wantCode: protocol,
		},
		{
			name:     "RSV1",
			input:    withBits(maskedFrame(codec.OpText, true, "a"), 0x40),
			wantErr:  codec.ErrReservedBits,
			wantCode: protocol,
		},
		{
			name:     "RSV2",
			input:    withBits(maskedFrame(codec.OpText, true, "a"), 0x20),
			wantErr:  codec.ErrReservedBits,
			wantCode: protocol,
		},
		{
			name:     "RSV3",
			input:    withBits(maskedFrame(codec.OpBinary, true, "a"), 0x10),
			wantErr:  codec.ErrReservedBits,
			wantCode: protocol,
		},
		{
			name:     "RSV1 on ping header only",
			input:    rawHeader(0x89|0x40, 0x80),
			wantErr:  codec.ErrReservedBits,
			wantCode: protocol,
		},
		{
			name:     "ping 126 from the 2-byte header",
			input:    rawHeader(0x89, 0x80|126),
			wantErr:  codec.ErrControlTooLong,
			wantCode: protocol,
		},
		{
			name:     "ping 127 from the 2-byte header",
			input:    rawHeader(0x89, 0x80|127),
			wantErr:  codec.ErrControlTooLong,
			wantCode: protocol,
		},
		{
			name:     "pong with a 126-byte payload",
			input:    maskedFrame(codec.OpPong, true, strings.Repeat("p", 126)),
			wantErr:  codec.ErrControlTooLong,
			wantCode: protocol,
		},
		{
			name:     "close with a 126-byte payload",
			input:    maskedFrame(codec.OpClose, true, closePayload(1000, strings.Repeat("r", 124))),
			wantErr:  codec.ErrControlTooLong,
			wantCode: protocol,
		},
		{
			name:     "ping not FIN",
			input:    maskedFrame(codec.OpPing, false, "p"),
			wantErr:  codec.ErrControlFragmented,
			wantCode: protocol,
		},
		{
			name:     "pong not FIN",
			input:    maskedFrame(codec.OpPong, false, ""),
			wantErr:  codec.ErrControlFragmented,
			wantCode: protocol,
		},
		{
			name:     "close not FIN",
			input:    maskedFrame(codec.OpClose, false, closePayload(1000, "")),
			wantErr:  codec.ErrControlFragmented,
			wantCode: protocol,
		},
		{
			name:     "ping not FIN inside a fragmented message",
			before:   [][]byte{maskedFrame(codec.OpText, false, "a")},
			input:    maskedFrame(codec.OpPing, false, ""),
			wantErr:  codec.ErrControlFragmented,
			wantCode: protocol,
		},
		{
			name:     "continuation without a start",
			input:    maskedFrame(codec.OpContinuation, true, "x"),
			wantErr:  codec.ErrUnexpectedContinuation,
			wantCode: protocol,
		},
		{
			name:     "non-final continuation without a start",
			input:    maskedFrame(codec.OpContinuation, false, "x"),
			wantErr:  codec.ErrUnexpectedContinuation,
			wantCode: protocol,
		},
		{
			name: "continuation after the message ended",
			before: [][]byte{
				maskedFrame(codec.OpText, false, "a"),
				maskedFrame(codec.OpContinuation, true, "b"),
			},
			input:    maskedFrame(codec.OpContinuation, true, "c"),
			wantErr:  codec.ErrUnexpectedContinuation,
			wantCode: protocol,
		},
		{
			name:     "text inside a fragmented text message",
			before:   [][]byte{maskedFrame(codec.OpText, false, "a")},
			input:    maskedFrame(codec.OpText, true, "b"),
			wantErr:  codec.ErrExpectedContinuation,
			wantCode: protocol,
		},
		{
			name:     "binary inside a fragmented text message",
			before:   [][]byte{maskedFrame(codec.OpText, false, "a")},
			input:    maskedFrame(codec.OpBinary, false, "b"),
			wantErr:  codec.ErrExpectedContinuation,
			wantCode: protocol,
		},
		{
			name: "text inside a fragmented binary message after a ping",
			before: [][]byte{
				maskedFrame(codec.OpBinary, false, "a"),
				maskedFrame(codec.OpPing, true, ""),
			},
			input:    maskedFrame(codec.OpText, true, "b"),
			wantErr:  codec.ErrExpectedContinuation,
			wantCode: protocol,
		},
		{
			name:     "2 MiB header only, default limit",
			input:    rawHeader(0x82, 0x80|127, len64(2<<20)...),
			wantErr:  codec.ErrMessageTooBig,
			wantCode: tooBig,
		},
		{
			name:     "2 MiB header and mask key, default limit",
			input:    append(rawHeader(0x82, 0x80|127, len64(2<<20)...), testMask[:]...),
			wantErr:  codec.ErrMessageTooBig,
			wantCode: tooBig,
		},
		{
			name:     "default limit plus one byte, header only",
			input:    rawHeader(0x81, 0x80|127, len64(codec.DefaultMaxMessageBytes+1)...),
			wantErr:  codec.ErrMessageTooBig,
			wantCode: tooBig,
		},
		{
			name:     "63-bit length, header only",
			input:    rawHeader(0x82, 0x80|127, len64(1<<63-1)...),
			wantErr:  codec.ErrMessageTooBig,
			wantCode: tooBig,
		},
		{
			name:     "a limit over MaxMessageLimit counts as MaxMessageLimit, header only",
			max:      1 << 40,
			input:    rawHeader(0x82, 0x80|127, len64(codec.MaxMessageLimit+1)...),
			wantErr:  codec.ErrMessageTooBig,
			wantCode: tooBig,
		},
		{
			name:     "16-bit length over the limit, header only",
			max:      200,
			input:    rawHeader(0x82, 0x80|126, 0x00, 201),
			wantErr:  codec.ErrMessageTooBig,
			wantCode: tooBig,
		},
		{
			name:     "7-bit length over the limit, header only",
			max:      10,
			input:    rawHeader(0x81, 0x80|11),
			wantErr:  codec.ErrMessageTooBig,
			wantCode: tooBig,
		},
		{
			name:     "whole frame one byte over the limit",
			max:      10,
			input:    maskedFrame(codec.OpBinary, true, strings.Repeat("b", 11)),
			wantErr:  codec.ErrMessageTooBig,
			wantCode: tooBig,
		},
		{
			name:     "fragment sum over the limit",
			max:      10,
			before:   [][]byte{maskedFrame(codec.OpBinary, false, "123456")},
			input:    maskedFrame(codec.OpContinuation, true, "12345"),
			wantErr:  codec.ErrMessageTooBig,
			wantCode: tooBig,
		},
		{
			name: "fragment sum over the limit, header only, after control frames",
			max:  10,
			before: [][]byte{
				maskedFrame(codec.OpText, false, "12345"),
				maskedFrame(codec.OpPing, true, "ping"),
				maskedFrame(codec.OpContinuation, false, "1234"),
			},
			input:    rawHeader(0x80, 0x80|2),
			wantErr:  codec.ErrMessageTooBig,
			wantCode: tooBig,
		},
		{
			name:     "64-bit length with the top bit set",
			input:    rawHeader(0x82, 0x80|127, len64(1<<63)...),
			wantErr:  codec.ErrLengthTopBit,
			wantCode: protocol,
		},
		{
			name:     "64-bit length all ones",
			max:      1<<63 - 1,
			input:    rawHeader(0x81, 0x80|127, len64(1<<64-1)...),
			wantErr:  codec.ErrLengthTopBit,
			wantCode: protocol,
		},
		{
			name:     "16-bit length that fits in 7 bits",
			input:    rawHeader(0x82, 0x80|126, 0, 125),
			wantErr:  codec.ErrLengthNotMinimal,
			wantCode: protocol,
		},
		{
			name:     "64-bit length that fits in 16 bits",
			input:    rawHeader(0x82, 0x80|127, len64(0xFFFF)...),
			wantErr:  codec.ErrLengthNotMinimal,
			wantCode: protocol,
		},
		{
			name:     "64-bit length of zero",
			input:    rawHeader(0x81, 0x80|127, len64(0)...),
			wantErr:  codec.ErrLengthNotMinimal,
			wantCode: protocol,
		},
		{
			name:     "text not UTF-8",
			input:    maskedFrame(codec.OpText, true, "a\xffb"),
			wantErr:  codec.ErrInvalidUTF8,
			wantCode: utf8Code,
		},
		{
			name:     "text with a surrogate",
			input:    maskedFrame(codec.OpText, true, "\xed\xa0\x80"),
			wantErr:  codec.ErrInvalidUTF8,
			wantCode: utf8Code,
		},
		{
			name:     "invalid byte in the second fragment",
			before:   [][]byte{maskedFrame(codec.OpText, false, "valid")},
			input:    maskedFrame(codec.OpContinuation, false, "ok\xc0\xafmore"),
			wantErr:  codec.ErrInvalidUTF8,
			wantCode: utf8Code,
		},
		{
			name:     "character started in one fragment broken in the next",
			before:   [][]byte{maskedFrame(codec.OpText, false, "caf\xc3")},
			input:    maskedFrame(codec.OpContinuation, true, "e"),
			wantErr:  codec.ErrInvalidUTF8,
			wantCode: utf8Code,
		},
		{
			name:     "message ends mid-character",
			before:   [][]byte{maskedFrame(codec.OpText, false, "price: ")},
			input:    maskedFrame(codec.OpContinuation, true, "\xe2\x82"),
			wantErr:  codec.ErrInvalidUTF8,
			wantCode: utf8Code,
		},
		{
			name:     "single frame ends mid-character",
			input:    maskedFrame(codec.OpText, true, "\xf0\x9f\x98"),
			wantErr:  codec.ErrInvalidUTF8,
			wantCode: utf8Code,
		},
		{
			name:     "fail fast on the first fragment",
			input:    maskedFrame(codec.OpText, false, "\xc0\x80"),
			wantErr:  codec.ErrInvalidUTF8,
			wantCode: utf8Code,
		},
		{
			name:     "fail fast on a middle fragment after a ping",
			before:   [][]byte{maskedFrame(codec.OpText, false, "a"), maskedFrame(codec.OpPing, true, "")},
			input:    maskedFrame(codec.OpContinuation, false, "\xf4\x90\x80\x80"),
			wantErr:  codec.ErrInvalidUTF8,
			wantCode: utf8Code,
		},
		{
			name:     "close with a 1-byte payload",
			input:    maskedFrame(codec.OpClose, true, "\x03"),
			wantErr:  codec.ErrCloseLength,
			wantCode: protocol,
		},
		{
			name:     "close reason not UTF-8",
			input:    maskedFrame(codec.OpClose, true, closePayload(1000, "bye\xff")),
			wantErr:  codec.ErrCloseReasonUTF8,
			wantCode: utf8Code,
		},
		{
			name:     "close reason ends mid-character",
			input:    maskedFrame(codec.OpClose, true, closePayload(1001, "\xe2\x82")),
			wantErr:  codec.ErrCloseReasonUTF8,
			wantCode: utf8Code,
		},
	}
	// RFC 6455 §5.2: %x3-7 are reserved for non-control frames, %xB-F for control frames.
	for _, op := range []byte{0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		tests = append(tests,
			decodeErrorCase{
				name:     fmt.Sprintf("reserved opcode %#x", op),
				input:    maskedFrame(codec.OpCode(op), true, "x"),
				wantErr:  codec.ErrReservedOpcode,
				wantCode: protocol,
			},
			decodeErrorCase{
				name:     fmt.Sprintf("reserved opcode %#x header only", op),
				input:    rawHeader(op, 0x80),
				wantErr:  codec.ErrReservedOpcode,
				wantCode: protocol,
			},
		)
	}
	// RFC 6455 §7.4: below 1000 unused, 1004-1006 and 1015 reserved, 1016-2999 for future
	// protocol use, 5000 and up undefined.
	for _, code := range []uint16{0, 1, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535} {
		tests = append(tests, decodeErrorCase{
			name:     fmt.Sprintf("close code %d", code),
			input:    maskedFrame(codec.OpClose, true, closePayload(code, "")),
			wantErr:  codec.ErrCloseCode,
			wantCode: protocol,
		})
	}
	return tests
}

func TestDecodeProtocolErrors(t *testing.T) {
	for _, tt := range decodeErrorCases() {
		t.Run(tt.name, func(t *testing.T) {
			d := codec.Decoder{}
			for i, fr := range tt.before {
				_, n, err := d.Decode(bytes.Clone(fr), tt.max)
				if err != nil || n != len(fr) {
					t.Fatalf(
						"before[%d]: n, err = %d, %v; want %d, nil",
						i, n, err, len(fr))
				}
			}
			_, n, err := d.Decode(bytes.Clone(tt.input), tt.max)
			checkProtocolError(t, err, tt.wantErr, tt.wantCode)
			if n != 0 {
				t.Errorf(
					"n = %d on error, want 0",
					n)
			}
		})
	}
}

type decodeSequenceCase struct {
	name          string
	max           int64 // Decoder.MaxMessageBytes
	frames        [][]byte
	want          []codec.Frame
	wantInMessage bool // Decoder.InMessage after the last frame
}

func TestDecodeSequences(t *testing.T) {
	tests := []decodeSequenceCase{
		{
			name:   "single text",
			frames: [][]byte{maskedFrame(codec.OpText, true, "hello")},
			want:   []codec.Frame{frameOf(codec.OpText, codec.OpText, true, "hello")},
		},
		{
			name:   "empty text and empty binary",
			frames: [][]byte{maskedFrame(codec.OpText, true, ""), maskedFrame(codec.OpBinary, true, "")},
			want: []codec.Frame{
				frameOf(codec.OpText, codec.OpText, true, ""),
				frameOf(codec.OpBinary, codec.OpBinary, true, ""),
			},
		},
		{
			name:   "binary is never UTF-8 checked",
			frames: [][]byte{maskedFrame(codec.OpBinary, true, "\xff\xfe\xc0\x80\xed\xa0\x80")},
			want:   []codec.Frame{frameOf(codec.OpBinary, codec.OpBinary, true, "\xff\xfe\xc0\x80\xed\xa0\x80")},
		},
		{
			name: "fragmented binary ending mid-character",
			frames: [][]byte{
				maskedFrame(codec.OpBinary, false, "\xe2"),
				maskedFrame(codec.OpContinuation, true, "\x82"),
			},
			want: []codec.Frame{
				frameOf(codec.OpBinary, codec.OpBinary, false, "\xe2"),
				frameOf(codec.OpContinuation, codec.OpBinary, true, "\x82"),
			},
		},
		{
			name: "fragmented text",
			frames: [][]byte{
				maskedFrame(codec.OpText, false, "Hel"),
				maskedFrame(codec.OpContinuation, false, "lo, "),
				maskedFrame(codec.OpContinuation, true, "world"),
			},
			want: []codec.Frame{
				frameOf(codec.OpText, codec.OpText, false, "Hel"),
				frameOf(codec.OpContinuation, codec.OpText, false, "lo, "),
				frameOf(codec.OpContinuation, codec.OpText, true, "world"),
			},
		},
		{
			name: "message still in flight",
			frames: [][]byte{
				maskedFrame(codec.OpText, false, "Hel"),
				maskedFrame(codec.OpContinuation, false, "lo"),
			},
			want: []codec.Frame{
				frameOf(codec.OpText, codec.OpText, false, "Hel"),
				frameOf(codec.OpContinuation, codec.OpText, false, "lo"),
			},
			wantInMessage: true,
		},
		{
			name: "2-byte character split across fragments",
			frames: [][]byte{
				maskedFrame(codec.OpText, false, "caf\xc3"),
				maskedFrame(codec.OpContinuation, true, "\xa9"),
			},
			want: []codec.Frame{
				frameOf(codec.OpText, codec.OpText, false, "caf\xc3"),
				frameOf(codec.OpContinuation, codec.OpText, true, "\xa9"),
			},
		},
		{
			name: "4-byte character split across three fragments and a ping",
			frames: [][]byte{
				maskedFrame(codec.OpText, false, "\xf0\x9f"),
				maskedFrame(codec.OpContinuation, false, "\x98"),
				maskedFrame(codec.OpPing, true, "\xff"),
				maskedFrame(codec.OpContinuation, true, "\x80"),
			},
			want: []codec.Frame{
				frameOf(codec.OpText, codec.OpText, false, "\xf0\x9f"),
				frameOf(codec.OpContinuation, codec.OpText, false, "\x98"),
				frameOf(codec.OpPing, codec.OpPing, true, "\xff"),
				frameOf(codec.OpContinuation, codec.OpText, true, "\x80"),
			},
		},
		{
			name: "empty fragments",
			frames: [][]byte{
				maskedFrame(codec.OpText, false, ""),
				maskedFrame(codec.OpContinuation, false, ""),
				maskedFrame(codec.OpContinuation, true, ""),
			},
			want: []codec.Frame{
				frameOf(codec.OpText, codec.OpText, false, ""),
				frameOf(codec.OpContinuation, codec.OpText, false, ""),
				frameOf(codec.OpContinuation, codec.OpText, true, ""),
			},
		},
		{
			name: "ping, pong and close inside a fragmented text message",
			frames: [][]byte{
				maskedFrame(codec.OpText, false, "ab"),
				maskedFrame(codec.OpPing, true, "ping"),
				maskedFrame(codec.OpPong, true, "pong"),
				maskedFrame(codec.OpClose, true, closePayload(1000, "bye")),
				maskedFrame(codec.OpContinuation, false, "cd"),
				maskedFrame(codec.OpPing, true, ""),
				maskedFrame(codec.OpContinuation, true, "ef"),
				maskedFrame(codec.OpBinary, true, "next"),
			},
			want: []codec.Frame{
				frameOf(codec.OpText, codec.OpText, false, "ab"),
				frameOf(codec.OpPing, codec.OpPing, true, "ping"),
				frameOf(codec.OpPong, codec.OpPong, true, "pong"),
				frameOf(codec.OpClose, codec.OpClose, true, closePayload(1000, "bye")),
				frameOf(codec.OpContinuation, codec.OpText, false, "cd"),
				frameOf(codec.OpPing, codec.OpPing, true, ""),
				frameOf(codec.OpContinuation, codec.OpText, true, "ef"),
				frameOf(codec.OpBinary, codec.OpBinary, true, "next"),
			},
		},
		{
			name: "control frames inside a fragmented binary message",
			frames: [][]byte{
				maskedFrame(codec.OpBinary, false, "\x00"),
				maskedFrame(codec.OpPong, true, ""),
				maskedFrame(codec.OpContinuation, true, "\x01"),
			},
			want: []codec.Frame{
				frameOf(codec.OpBinary, codec.OpBinary, false, "\x00"),
				frameOf(codec.OpPong, codec.OpPong, true, ""),
				frameOf(codec.OpContinuation, codec.OpBinary, true, "\x01"),
			},
		},
		{
			name: "control frames of 125 bytes",
			frames: [][]byte{
				maskedFrame(codec.OpPing, true, strings.Repeat("i", 125)),
				maskedFrame(codec.OpClose, true, closePayload(1000, strings.Repeat("c", 123))),
			},
			want: []codec.Frame{
				frameOf(codec.OpPing, codec.OpPing, true, strings.Repeat("i", 125)),
				frameOf(codec.OpClose, codec.OpClose, true, closePayload(1000, strings.Repeat("c", 123))),
			},
		},
		{
			name:   "close with an empty payload",
			frames: [][]byte{maskedFrame(codec.OpClose, true, "")},
			want:   []codec.Frame{frameOf(codec.OpClose, codec.OpClose, true, "")},
		},
		{
			name:   "close with a UTF-8 reason",
			frames: [][]byte{maskedFrame(codec.OpClose, true, closePayload(4001, "idle \xe2\x8f\xb3"))},
			want:   []codec.Frame{frameOf(codec.OpClose, codec.OpClose, true, closePayload(4001, "idle \xe2\x8f\xb3"))},
		},
		{
			name:   "exactly at the limit",
			max:    10,
			frames: [][]byte{maskedFrame(codec.OpBinary, true, "0123456789")},
			want:   []codec.Frame{frameOf(codec.OpBinary, codec.OpBinary, true, "0123456789")},
		},
		{
			name: "fragments exactly at the limit, control frames not counted",
			max:  10,
			frames: [][]byte{
				maskedFrame(codec.OpText, false, "012345"),
				maskedFrame(codec.OpPing, true, "ping!"),
				maskedFrame(codec.OpContinuation, false, ""),
				maskedFrame(codec.OpContinuation, true, "6789"),
			},
			want: []codec.Frame{
				frameOf(codec.OpText, codec.OpText, false, "012345"),
				frameOf(codec.OpPing, codec.OpPing, true, "ping!"),
				frameOf(codec.OpContinuation, codec.OpText, false, ""),
				frameOf(codec.OpContinuation, codec.OpText, true, "6789"),
			},
		},
		{
			name: "the limit applies per message",
			max:  10,
			frames: [][]byte{
				maskedFrame(codec.OpBinary, false, "01234"),
				maskedFrame(codec.OpContinuation, true, "56789"),
				maskedFrame(codec.OpBinary, false, "01234"),
				maskedFrame(codec.OpContinuation, true, "56789"),
				maskedFrame(codec.OpText, true, "0123456789"),
			},
			want: []codec.Frame{
				frameOf(codec.OpBinary, codec.OpBinary, false, "01234"),
				frameOf(codec.OpContinuation, codec.OpBinary, true, "56789"),
				frameOf(codec.OpBinary, codec.OpBinary, false, "01234"),
				frameOf(codec.OpContinuation, codec.OpBinary, true, "56789"),
				frameOf(codec.OpText, codec.OpText, true, "0123456789"),
			},
		},
		{
			name:   "16-bit length, 126 bytes",
			frames: [][]byte{maskedFrame(codec.OpText, true, strings.Repeat("x", 126))},
			want:   []codec.Frame{frameOf(codec.OpText, codec.OpText, true, strings.Repeat("x", 126))},
		},
		{
			name:   "16-bit length, 65535 bytes",
			frames: [][]byte{maskedFrame(codec.OpBinary, true, strings.Repeat("y", 65535))},
			want:   []codec.Frame{frameOf(codec.OpBinary, codec.OpBinary, true, strings.Repeat("y", 65535))},
		},
		{
			name:   "64-bit length, 65536 bytes",
			frames: [][]byte{maskedFrame(codec.OpText, true, strings.Repeat("z", 65536))},
			want:   []codec.Frame{frameOf(codec.OpText, codec.OpText, true, strings.Repeat("z", 65536))},
		},
		{
			name: "zero Decoder accepts DefaultMaxMessageBytes",
			frames: [][]byte{
				maskedFrame(codec.OpBinary, false, strings.Repeat("a", codec.DefaultMaxMessageBytes-1)),
				maskedFrame(codec.OpContinuation, true, "b"),
			},
			want: []codec.Frame{
				frameOf(codec.OpBinary, codec.OpBinary, false, strings.Repeat("a", codec.DefaultMaxMessageBytes-1)),
				frameOf(codec.OpContinuation, codec.OpBinary, true, "b"),
			},
		},
	}
	// RFC 6455 §7.4.1 and IANA: 1000-1003, 1007-1014 and the 3000-4999 ranges are valid.
	for _, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999} {
		payload := closePayload(code, "r")
		tests = append(tests, decodeSequenceCase{
			name:   fmt.Sprintf("close code %d", code),
			frames: [][]byte{maskedFrame(codec.OpClose, true, payload)},
			want:   []codec.Frame{frameOf(codec.OpClose, codec.OpClose, true, payload)},
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// All frames back to back in one buffer, decoded one at a time.
			var buf []byte
			for _, fr := range tt.frames {
				buf = append(buf, fr...)
			}
			d := codec.Decoder{}
			off := 0
			for i, want := range tt.want {
				f, n, err := d.Decode(buf[off:], tt.max)
				if err != nil {
					t.Fatalf(
						"frame %d: %v",
						i, err)
				}
				if n != len(tt.frames[i]) {
					t.Fatalf(
						"frame %d: n = %d, want %d",
						i, n, len(tt.frames[i]))
				}
				if !sameFrame(f, want) {
					t.Fatalf(
						"frame %d = %.200s, want %.200s",
						i, fmtFrame(f), fmtFrame(want))
				}
				off += n
			}
			if off != len(buf) {
				t.Fatalf(
					"consumed %d of %d bytes",
					off, len(buf))
			}
			if _, n, err := d.Decode(buf[off:], tt.max); !errors.Is(err, codec.ErrIncomplete) || n != 0 {
				t.Fatalf(
					"Decode(empty) = %d, %v; want 0, ErrIncomplete",
					n, err)
			}
			if d.InMessage() != tt.wantInMessage {
				t.Fatalf(
					"InMessage = %v, want %v",
					d.InMessage(), tt.wantInMessage)
			}
		})
	}
}

// prefixLengths returns the strict prefix lengths of an n-byte frame to try: all of them
// for small frames, and for large ones every header length, a stride through the
// payload, and the last bytes.
func prefixLengths(n int) []int {
	var ks []int
	for k := 0; k < n; k++ {
		if n <= 1024 || k < 64 || k%997 == 0 || k >= n-64 {
			ks = append(ks, k)
		}
	}
	return ks
}

func TestDecodeIncompletePrefixes(t *testing.T) {
	tests := []struct {
		name   string
		before [][]byte // frames decoded first, to put the Decoder mid-message
		frame  []byte
	}{
		{
			name:  "empty text",
			frame: maskedFrame(codec.OpText, true, ""),
		},
		{
			name:  "short text",
			frame: maskedFrame(codec.OpText, true, "hello, world"),
		},
		{
			name:  "125-byte binary",
			frame: maskedFrame(codec.OpBinary, true, strings.Repeat("\x80", 125)),
		},
		{
			name:  "126-byte text",
			frame: maskedFrame(codec.OpText, true, strings.Repeat("\xc3\xa9", 63)),
		},
		{
			name:  "1000-byte binary fragment",
			frame: maskedFrame(codec.OpBinary, false, strings.Repeat("b", 1000)),
		},
		{
			name:  "65535-byte text",
			frame: maskedFrame(codec.OpText, true, strings.Repeat("t", 65535)),
		},
		{
			name:  "65536-byte binary",
			frame: maskedFrame(codec.OpBinary, true, strings.Repeat("\xff", 65536)),
		},
		{
			name:  "ping",
			frame: maskedFrame(codec.OpPing, true, "are you there"),
		},
		{
			name:  "close with reason",
			frame: maskedFrame(codec.OpClose, true, closePayload(1001, "going away")),
		},
		{
			name:   "continuation mid text message",
			before: [][]byte{maskedFrame(codec.OpText, false, "caf\xc3")},
			frame:  maskedFrame(codec.OpContinuation, true, "\xa9 au lait"),
		},
		{
			name:   "ping mid binary message",
			before: [][]byte{maskedFrame(codec.OpBinary, false, "x")},
			frame:  maskedFrame(codec.OpPing, true, "p"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d codec.Decoder
			for i, fr := range tt.before {
				if _, _, err := d.Decode(bytes.Clone(fr), 0); err != nil {
					t.Fatalf(
						"before[%d]: %v",
						i, err)
				}
			}
			state := d
			for _, k := range prefixLengths(len(tt.frame)) {
				b := bytes.Clone(tt.frame[:k])
				_, n, err := d.Decode(b[:k:k], 0)
				if !errors.Is(err, codec.ErrIncomplete) || n != 0 {
					t.Fatalf(
						"prefix %d of %d: n, err = %d, %v; want 0, ErrIncomplete",
						k, len(tt.frame), n, err)
				}
				if !bytes.Equal(b, tt.frame[:k]) {
					t.Fatalf(
						"prefix %d of %d: Decode modified b on ErrIncomplete",
						k, len(tt.frame))
				}
				if d != state {
					t.Fatalf(
						"prefix %d of %d: Decoder state changed on ErrIncomplete",
						k, len(tt.frame))
				}
			}
			b := bytes.Clone(tt.frame)
			if _, n, err := d.Decode(b, 0); err != nil || n != len(b) {
				t.Fatalf(
					"whole frame: n, err = %d, %v; want %d, nil",
					n, err, len(b))
			}
		})
	}
}

// xorMask is the reference masking of RFC 6455 §5.3: octet i is xored with mask[i%4].
func xorMask(p []byte, mask [4]byte) []byte {
	out := make([]byte, len(p))
	for i := range p {
		out[i] = p[i] ^ mask[i%4]
	}
	return out
}

func TestDecodeUnmasksPayload(t *testing.T) {
	rng := rand.New(rand.NewPCG(6455, 1))
	var sizes []int
	for n := 0; n <= 300; n++ {
		sizes = append(sizes, n)
	}
	sizes = append(sizes, 1000, 4099, 65535, 65536, 70001)
	for _, n := range sizes {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(rng.Uint32())
		}
		var mask [4]byte
		binary.LittleEndian.PutUint32(mask[:], rng.Uint32())
		// A prefix of 0-7 bytes in dst moves the payload's alignment.
		prefix := make([]byte, rng.IntN(8))
		frame := codec.AppendClientFrame(prefix, codec.OpBinary, true, payload, mask)
		frame = frame[len(prefix):]
		hdr := len(frame) - n
		if want := codec.FrameSize(n) + 4; len(frame) != want {
			t.Fatalf(
				"size %d: frame is %d bytes, want %d",
				n, len(frame), want)
		}
		if !bytes.Equal(frame[hdr:], xorMask(payload, mask)) {
			t.Fatalf(
				"size %d, mask %x: AppendClientFrame payload is not masked per RFC 6455 §5.3",
				n, mask)
		}
		var d codec.Decoder
		f, consumed, err := d.Decode(frame, 0)
		if err != nil || consumed != len(frame) {
			t.Fatalf(
				"size %d: n, err = %d, %v; want %d, nil",
				n, consumed, err, len(frame))
		}
		if !bytes.Equal(f.Payload, payload) {
			t.Fatalf(
				"size %d, mask %x: decoded payload differs from the original",
				n, mask)
		}
		if n > 0 && &f.Payload[0] != &frame[hdr] {
			t.Fatalf(
				"size %d: payload does not alias the input",
				n)
		}
	}
}

func TestAppendFrameReadHeader(t *testing.T) {
	tests := []struct {
		name    string
		op      codec.OpCode
		fin     bool
		size    int
		wantHdr int // header bytes: 2, 4 or 10 (RFC 6455 §5.2)
	}{
		{
			name:    "empty",
			op:      codec.OpText,
			fin:     true,
			size:    0,
			wantHdr: 2,
		},
		{
			name:    "125",
			op:      codec.OpBinary,
			fin:     true,
			size:    125,
			wantHdr: 2,
		},
		{
			name:    "126",
			op:      codec.OpText,
			fin:     false,
			size:    126,
			wantHdr: 4,
		},
		{
			name:    "65535",
			op:      codec.OpContinuation,
			fin:     true,
			size:    65535,
			wantHdr: 4,
		},
		{
			name:    "65536",
			op:      codec.OpBinary,
			fin:     false,
			size:    65536,
			wantHdr: 10,
		},
		{
			name:    "ping",
			op:      codec.OpPing,
			fin:     true,
			size:    4,
			wantHdr: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := bytes.Repeat([]byte("0123456789"), tt.size/10+1)[:tt.size]
			dst := []byte("prefix")
			frame := codec.AppendFrame(dst, tt.op, tt.fin, payload)
			if string(frame[:6]) != "prefix" {
				t.Fatalf(
					"AppendFrame clobbered dst: %q",
					frame[:6])
			}
			frame = frame[6:]
			if len(frame) != codec.FrameSize(tt.size) || len(frame) != tt.wantHdr+tt.size {
				t.Fatalf(
					"len = %d, FrameSize = %d, want %d",
					len(frame), codec.FrameSize(tt.size), tt.wantHdr+tt.size)
			}
			r := bytes.NewReader(frame)
			h, err := ws.ReadHeader(r)
			if err != nil {
				t.Fatalf(
					"ws.ReadHeader: %v",
					err)
			}
			want := ws.Header{Fin: tt.fin, OpCode: tt.op, Length: int64(tt.size)}
			if h != want {
				t.Fatalf(
					"header = %+v, want %+v",
					h, want)
			}
			if r.Len() != tt.size || !bytes.Equal(frame[len(frame)-r.Len():], payload) {
				t.Fatalf(
					"payload after the header differs (%d bytes left)",
					r.Len())
			}

			var mask [4]byte
			binary.BigEndian.PutUint32(mask[:], 0xA1B2C3D4+uint32(tt.size))
			client := codec.AppendClientFrame(nil, tt.op, tt.fin, payload, mask)
			h, err = ws.ReadHeader(bytes.NewReader(client))
			if err != nil {
				t.Fatalf(
					"ws.ReadHeader(client frame): %v",
					err)
			}
			want = ws.Header{Fin: tt.fin, OpCode: tt.op, Masked: true, Mask: mask, Length: int64(tt.size)}
			if h != want {
				t.Fatalf(
					"client header = %+v, want %+v",
					h, want)
			}
			var d codec.Decoder
			if tt.op == codec.OpContinuation {
				// Open a message for the continuation to continue.
				if _, _, err := d.Decode(maskedFrame(codec.OpBinary, false, ""), 0); err != nil {
					t.Fatal(err)
				}
			}
			f, n, err := d.Decode(client, 0)
			if err != nil || n != len(client) {
				t.Fatalf(
					"Decode(client frame): n, err = %d, %v; want %d, nil",
					n, err, len(client))
			}
			if f.Op != tt.op || f.Fin != tt.fin || !bytes.Equal(f.Payload, payload) {
				t.Fatalf(
					"decoded %.80s, want Op %v Fin %v and the original payload",
					fmtFrame(f), tt.op, tt.fin)
			}
		})
	}
}

func TestPrecompiledFrames(t *testing.T) {
	tests := []struct {
		name  string
		got   []byte
		want  []byte
		equal []byte // the same frame built by AppendFrame
	}{
		{
			name:  "PingFrame",
			got:   codec.PingFrame,
			want:  []byte{0x89, 0x00},
			equal: codec.AppendFrame(nil, codec.OpPing, true, nil),
		},
		{
			name:  "PongFrame",
			got:   codec.PongFrame,
			want:  []byte{0x8A, 0x00},
			equal: codec.AppendFrame(nil, codec.OpPong, true, nil),
		},
		{
			name:  "AppendPong",
			got:   codec.AppendPong(nil, []byte("abc")),
			want:  []byte{0x8A, 0x03, 'a', 'b', 'c'},
			equal: codec.AppendFrame(nil, codec.OpPong, true, []byte("abc")),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Equal(tt.got, tt.want) || !bytes.Equal(tt.got, tt.equal) {
				t.Fatalf(
					"% x, want % x",
					tt.got, tt.want)
			}
		})
	}
}

func TestDecoderReset(t *testing.T) {
	var d codec.Decoder
	if _, _, err := d.Decode(maskedFrame(codec.OpText, false, "\xe2"), 10); err != nil {
		t.Fatal(err)
	}
	if !d.InMessage() {
		t.Fatal("InMessage = false after a non-final text frame")
	}
	d.Reset()
	if d.InMessage() {
		t.Fatal("after Reset: InMessage = true, want false")
	}
	_, _, err := d.Decode(maskedFrame(codec.OpContinuation, true, "x"), 10)
	checkProtocolError(t, err, codec.ErrUnexpectedContinuation, codec.CloseProtocolError)
	d.Reset()
	if _, _, err := d.Decode(maskedFrame(codec.OpText, true, "0123456789"), 10); err != nil {
		t.Fatalf(
			"after Reset: %v",
			err)
	}
}

func TestSteadyStateDoesNotAllocate(t *testing.T) {
	payload := []byte(strings.Repeat("steady state ", 10))
	frame := codec.AppendClientFrame(nil, codec.OpText, true, payload, testMask)
	var d codec.Decoder
	buf := make([]byte, 0, codec.FrameSize(len(payload)))
	allocs := testing.AllocsPerRun(100, func() {
		f, _, err := d.Decode(frame, 0)
		if err != nil {
			panic(err)
		}
		ws.Cipher(f.Payload, testMask, 0) // re-mask for the next run
		buf = codec.AppendFrame(buf[:0], codec.OpText, true, payload)
	})
	if allocs != 0 {
		t.Fatalf(
			"%v allocs per Decode + AppendFrame, want 0",
			allocs)
	}
}

// TestDecodeClientMode covers Decoder.Client, which decodes server frames: unmasked
// frames are required and a masked one is refused (RFC 6455 §5.1); the other rules hold.
func TestDecodeClientMode(t *testing.T) {
	server := func(op codec.OpCode, fin bool, payload string) []byte {
		return codec.AppendFrame(nil, op, fin, []byte(payload))
	}
	frames := [][]byte{
		server(codec.OpText, false, "caf\xc3"),
		server(codec.OpPing, true, "p"),
		server(codec.OpContinuation, true, "\xa9"),
		server(codec.OpBinary, true, strings.Repeat("b", 300)),
		codec.PingFrame,
		server(codec.OpClose, true, closePayload(1001, "drain")),
	}
	want := []codec.Frame{
		frameOf(codec.OpText, codec.OpText, false, "caf\xc3"),
		frameOf(codec.OpPing, codec.OpPing, true, "p"),
		frameOf(codec.OpContinuation, codec.OpText, true, "\xa9"),
		frameOf(codec.OpBinary, codec.OpBinary, true, strings.Repeat("b", 300)),
		frameOf(codec.OpPing, codec.OpPing, true, ""),
		frameOf(codec.OpClose, codec.OpClose, true, closePayload(1001, "drain")),
	}
	d := codec.Decoder{Client: true}
	for i, fr := range frames {
		for k := range len(fr) {
			state := d
			if _, n, err := d.Decode(fr[:k:k], 0); !errors.Is(err, codec.ErrIncomplete) || n != 0 || d != state {
				t.Fatalf(
					"frame %d, prefix %d: n, err = %d, %v; want 0, ErrIncomplete and no state change",
					i, k, n, err)
			}
		}
		f, n, err := d.Decode(fr, 0)
		if err != nil || n != len(fr) || !sameFrame(f, want[i]) {
			t.Fatalf(
				"frame %d: %s, %d, %v; want %s, %d, nil",
				i, fmtFrame(f), n, err, fmtFrame(want[i]), len(fr))
		}
	}

	tests := []struct {
		name     string
		input    []byte
		wantErr  error
		wantCode codec.CloseCode
	}{
		{
			name:     "masked frame",
			input:    maskedFrame(codec.OpText, true, "hi"),
			wantErr:  codec.ErrMasked,
			wantCode: codec.CloseProtocolError,
		},
		{
			name:     "masked header only",
			input:    rawHeader(0x89, 0x80),
			wantErr:  codec.ErrMasked,
			wantCode: codec.CloseProtocolError,
		},
		{
			name:     "text not UTF-8",
			input:    server(codec.OpText, true, "\xff"),
			wantErr:  codec.ErrInvalidUTF8,
			wantCode: codec.CloseInvalidPayload,
		},
		{
			name:     "over the limit, header only",
			input:    rawHeader(0x82, 127, len64(2<<20)...),
			wantErr:  codec.ErrMessageTooBig,
			wantCode: codec.CloseTooBig,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := codec.Decoder{Client: true}
			_, _, err := d.Decode(bytes.Clone(tt.input), 0)
			checkProtocolError(t, err, tt.wantErr, tt.wantCode)
		})
	}
}

func TestAppendFrameHeader(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		payload := make([]byte, n)
		want := codec.AppendFrame(nil, codec.OpBinary, true, payload)
		got := codec.AppendFrameHeader([]byte("x"), codec.OpBinary, true, n)
		if string(got[:1]) != "x" || !bytes.Equal(got[1:], want[:len(want)-n]) {
			t.Fatalf(
				"size %d: header % x, want % x",
				n, got[1:], want[:len(want)-n])
		}
	}
}

// TestDecoderSize guards the bytes a Decoder adds to every connection (DESIGN invariant 2).
func TestDecoderSize(t *testing.T) {
	if got := unsafe.Sizeof(codec.Decoder{}); got > 8 {
		t.Fatalf("codec.Decoder is %d bytes, over the 8 it is budgeted for", got)
	}
}

// TestDecodeAtMaxMessageLimit checks that a frame of exactly MaxMessageLimit bytes passes
// the size check under a larger limit: its header alone is incomplete, not too big.
func TestDecodeAtMaxMessageLimit(t *testing.T) {
	var d codec.Decoder
	hdr := append(rawHeader(0x82, 0x80|127, len64(codec.MaxMessageLimit)...), testMask[:]...)
	if _, n, err := d.Decode(hdr, 1<<40); !errors.Is(err, codec.ErrIncomplete) || n != 0 {
		t.Fatalf("Decode(header of a %d-byte frame, limit 1<<40) = %d, %v; want 0, ErrIncomplete", int64(codec.MaxMessageLimit), n, err)
	}
}
