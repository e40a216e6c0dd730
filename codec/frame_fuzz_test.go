package codec_test

import (
	"bytes"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/wsreactor/wsreactor/codec"
)

// fuzzFrame is a decoded frame with its payload copied out of the decode buffer.
type fuzzFrame struct {
	op, message codec.OpCode
	fin         bool
	payload     string
}

// fuzzMaxMessageBytes maps the fuzzed limit onto 1..1 MiB.
func fuzzMaxMessageBytes(n uint32) int64 { return int64(n%(1<<20)) + 1 }

// fuzzClient maps the top bit of the fuzzed limit onto Decoder.Client, so that both the
// server's decoder (masked frames) and the client's (unmasked) are fuzzed.
func fuzzClient(n uint32) bool { return n>>31 == 1 }

// decodeStream decodes frames from data as a connection would if the network delivered
// data[:split] first and the rest later: it decodes what is complete, and on ErrIncomplete
// keeps the unconsumed bytes, appends the rest (once) and goes on. It returns the frames
// and the error that ended the stream: ErrIncomplete when the input ran out, or the
// protocol error. With split == len(data) it decodes the whole input in one buffer.
func decodeStream(t *testing.T, data []byte, split int, limit int64, client bool) ([]fuzzFrame, error) {
	t.Helper()
	d := codec.Decoder{Client: client}
	buf := bytes.Clone(data[:split])
	consumed := 0 // bytes of data decoded so far
	arrived := split
	var frames []fuzzFrame
	for {
		f, n, err := d.Decode(buf, limit)
		if errors.Is(err, codec.ErrIncomplete) {
			if n != 0 {
				t.Fatalf(
					"ErrIncomplete with n = %d",
					n)
			}
			if !bytes.Equal(buf, data[consumed:arrived]) {
				t.Fatalf(
					"Decode modified its input on ErrIncomplete at offset %d",
					consumed)
			}
			if arrived == len(data) {
				return frames, err
			}
			// The rest arrives: the unconsumed bytes move to a fresh buffer, as they
			// would when the caller's read buffer is compacted and grown.
			buf = append(bytes.Clone(buf), data[arrived:]...)
			arrived = len(data)
			continue
		}
		if err != nil {
			if n != 0 {
				t.Fatalf(
					"error %v with n = %d",
					err, n)
			}
			return frames, err
		}
		if n < 2 || n > len(buf) {
			t.Fatalf(
				"n = %d with %d bytes in the buffer",
				n, len(buf))
		}
		frames = append(frames, fuzzFrame{op: f.Op, message: f.Message, fin: f.Fin, payload: string(f.Payload)})
		buf = buf[n:]
		consumed += n
	}
}

// checkFrameRules checks the decoded frames against RFC 6455 independently of the
// Decoder: what it let through must be a legal client stream under limit.
func checkFrameRules(t *testing.T, frames []fuzzFrame, limit int64) {
	t.Helper()
	var msgOp codec.OpCode // message in flight, 0 when none
	var msg []byte
	for i, f := range frames {
		switch f.op {
		case codec.OpPing, codec.OpPong, codec.OpClose:
			if f.message != f.op || !f.fin || len(f.payload) > codec.MaxControlPayload {
				t.Fatalf(
					"frame %d: bad control frame %+v",
					i, f)
			}
			if f.op == codec.OpClose {
				if _, _, err := codec.ParseClose([]byte(f.payload)); err != nil {
					t.Fatalf(
						"frame %d: close payload %q accepted: %v",
						i, f.payload, err)
				}
			}
			continue
		case codec.OpText, codec.OpBinary:
			if msgOp != 0 || f.message != f.op {
				t.Fatalf(
					"frame %d: %+v starts a message inside message %v",
					i, f, msgOp)
			}
			msgOp, msg = f.op, msg[:0]
		case codec.OpContinuation:
			if msgOp == 0 || f.message != msgOp {
				t.Fatalf(
					"frame %d: continuation %+v in message %v",
					i, f, msgOp)
			}
		default:
			t.Fatalf(
				"frame %d: reserved opcode %v accepted",
				i, f.op)
		}
		msg = append(msg, f.payload...)
		if int64(len(msg)) > limit {
			t.Fatalf(
				"frame %d: message of %d bytes accepted, limit %d",
				i, len(msg), limit)
		}
		if msgOp == codec.OpText && !validPrefix(msg) {
			t.Fatalf(
				"frame %d: text fragment with invalid UTF-8 accepted",
				i)
		}
		if f.fin {
			if msgOp == codec.OpText && !utf8.Valid(msg) {
				t.Fatalf(
					"frame %d: text message %q is not valid UTF-8",
					i, msg)
			}
			msgOp = 0
		}
	}
}

func FuzzDecoder(f *testing.F) {
	mask := [4]byte{0x01, 0x80, 0xFE, 0x7F}
	cf := func(op codec.OpCode, fin bool, payload string) []byte {
		return codec.AppendClientFrame(nil, op, fin, []byte(payload), mask)
	}
	cat := func(frames ...[]byte) []byte { return bytes.Join(frames, nil) }
	seeds := [][]byte{
		cf(codec.OpText, true, "hello"),
		cf(codec.OpBinary, true, "\x00\xff\x80"),
		cat(cf(codec.OpText, false, "caf\xc3"), cf(codec.OpPing, true, "p"), cf(codec.OpContinuation, true, "\xa9")),
		cat(
			cf(codec.OpBinary, false, "ab"),
			cf(codec.OpPong, true, ""),
			cf(codec.OpClose, true, closePayload(1000, "bye")),
			cf(codec.OpContinuation, true, "cd"),
			cf(codec.OpText, true, "next"),
		),
		cf(codec.OpText, true, string(bytes.Repeat([]byte("x"), 300))),
		cat(cf(codec.OpText, false, "\xf0\x9f"), cf(codec.OpContinuation, false, "\x98"), cf(codec.OpContinuation, true, "\x80")),
		cf(codec.OpClose, true, ""),
		cf(codec.OpClose, true, closePayload(1005, "")),
		cf(codec.OpClose, true, "\x03"),
		cat(cf(codec.OpText, true, "ok"), cf(codec.OpText, true, "\xed\xa0\x80")),
		cat(cf(codec.OpText, false, "a"), cf(codec.OpText, true, "b")),
		cf(codec.OpContinuation, true, "orphan"),
		cf(codec.OpPing, false, ""),
		codec.AppendFrame(nil, codec.OpText, true, []byte("unmasked")),
		{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0},
		{0x82, 0xFF, 0, 0, 0, 0, 0, 0x20, 0, 0},
		{0x89, 0xFE, 0x00, 0x7E},
		{0xC1, 0x80, 0, 0, 0, 0},
		{0x83, 0x80, 0, 0, 0, 0},
	}
	for i, s := range seeds {
		f.Add(s, uint16(i*7), uint32(64<<i))
	}
	// Server frames, for a Decoder with Client set (the top bit of the limit).
	sf := func(op codec.OpCode, fin bool, payload string) []byte {
		return codec.AppendFrame(nil, op, fin, []byte(payload))
	}
	f.Add(cat(sf(codec.OpText, false, "\xe2\x82"), codec.PingFrame, sf(codec.OpContinuation, true, "\xac")), uint16(5), uint32(1<<31|4096))
	f.Add(cat(sf(codec.OpBinary, true, string(bytes.Repeat([]byte{0xAA}, 200))), cf(codec.OpText, true, "masked")), uint16(3), uint32(1<<31|1<<20-1))
	f.Fuzz(func(t *testing.T, data []byte, split uint16, maxBytes uint32) {
		limit, client := fuzzMaxMessageBytes(maxBytes), fuzzClient(maxBytes)
		whole, wholeErr := decodeStream(t, data, len(data), limit, client)
		at := int(split) % (len(data) + 1)
		parts, partsErr := decodeStream(t, data, at, limit, client)
		if wholeErr != partsErr {
			t.Fatalf(
				"split at %d: error %v, whole %v",
				at, partsErr, wholeErr)
		}
		if len(whole) != len(parts) {
			t.Fatalf(
				"split at %d: %d frames, whole %d",
				at, len(parts), len(whole))
		}
		for i := range whole {
			if whole[i] != parts[i] {
				t.Fatalf(
					"split at %d: frame %d = %+v, whole %+v",
					at, i, parts[i], whole[i])
			}
		}
		var pe *codec.ProtocolError
		if !errors.Is(wholeErr, codec.ErrIncomplete) && !errors.As(wholeErr, &pe) {
			t.Fatalf(
				"error %v (%T) is neither ErrIncomplete nor a *ProtocolError",
				wholeErr, wholeErr)
		}
		checkFrameRules(t, whole, limit)
	})
}
