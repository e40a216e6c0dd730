package codec

import (
	"encoding/binary"

	"github.com/gobwas/ws"
)

// OpCode is a frame opcode (RFC 6455 §5.2); the constants are gobwas/ws's.
type OpCode = ws.OpCode

// Opcodes, re-exported so callers need not import gobwas/ws.
const (
	OpContinuation = ws.OpContinuation
	OpText         = ws.OpText
	OpBinary       = ws.OpBinary
	OpClose        = ws.OpClose
	OpPing         = ws.OpPing
	OpPong         = ws.OpPong
)

// MaxControlPayload is the largest payload of a control frame (RFC 6455 §5.5).
const MaxControlPayload = 125

// DefaultMaxMessageBytes is the message size limit a zero Decoder enforces (DESIGN.md's
// -max-message-bytes default).
const DefaultMaxMessageBytes = 1 << 20

// MaxMessageLimit is the largest message size limit Decode enforces; a larger maxMessage
// counts as this. A message is held whole in memory (one frame in the read buffer, or its
// fragments reassembled), so no server should allow more, and the cap lets the Decoder
// count a fragmented message in 32 bits, which keeps it at 8 bytes in every connection.
const MaxMessageLimit = 1<<32 - 1

// MaxHeaderSize is the longest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MaxHeaderSize = 14

// Frame is one decoded frame. Payload is unmasked in place and aliases the slice passed to
// Decode: it is valid only until the caller reuses or discards that slice.
type Frame struct {
	Op      OpCode // this frame's opcode (OpContinuation for a continuation)
	Message OpCode // for data frames, the message type (OpText or OpBinary); for control frames, Op
	Fin     bool   // last frame of its message
	Payload []byte
}

// Decoder decodes client frames one at a time and enforces RFC 6455 §5 across them: masking,
// reserved bits and opcodes, control-frame rules, fragmentation order, the message size
// limit and UTF-8 of text messages (checked fragment by fragment). It does not reassemble
// fragments: the caller does, only while a fragmented message is in flight.
//
// The zero Decoder is ready. A Decoder is not safe for
// concurrent use; each connection owns one. After an error the connection must be closed:
// the Decoder's state is undefined.
type Decoder struct {
	// The struct is 8 bytes: a Decoder lives in every connection, so the message size
	// limit, the same for all of a server's connections, is an argument of Decode rather
	// than a field, and msgLen is 32 bits (MaxMessageLimit).
	msgLen uint32    // bytes of the fragmented message received so far
	msgOp  OpCode    // type of the fragmented message in flight, 0 when none
	utf8   UTF8State // validator state of the text message in flight

	// Client makes the Decoder decode server frames, as a client does (bench/'s swarm):
	// frames must be unmasked (RFC 6455 §5.1) instead of masked. All other rules hold.
	Client bool
}

// InMessage reports whether a fragmented message is in flight (its first frame decoded, its
// final frame not yet).
func (d *Decoder) InMessage() bool { return d.msgOp != 0 }

// Reset returns d to its zero state, keeping Client.
func (d *Decoder) Reset() { *d = Decoder{Client: d.Client} }

// Decode parses at most one client frame from the front of b and reports how many bytes it
// consumed. It returns ErrIncomplete (consuming nothing, modifying nothing) until the whole
// frame is in b, except that header violations and an oversized length are reported as
// soon as the header bytes that prove them have arrived. On success the payload is unmasked
// in place in b and aliases it. maxMessage limits a whole data message (the sum of its
// fragments; 0 means DefaultMaxMessageBytes, and more than MaxMessageLimit means
// MaxMessageLimit): it is checked from each frame's header,
// before the payload arrives, so an oversized message is refused without buffering it.
// Pass the same limit for every frame of a connection.
func (d *Decoder) Decode(b []byte, maxMessage int64) (f Frame, n int, err error) {
	if len(b) < 2 {
		return f, 0, ErrIncomplete
	}
	b0, b1 := b[0], b[1]
	f.Fin = b0&0x80 != 0
	f.Op = OpCode(b0 & 0x0F)
	if b0&0x70 != 0 {
		return f, 0, ErrReservedBits
	}
	if f.Op.IsReserved() {
		return f, 0, ErrReservedOpcode
	}
	masked := b1&0x80 != 0
	if masked == d.Client {
		if d.Client {
			return f, 0, ErrMasked
		}
		return f, 0, ErrUnmasked
	}
	length := int64(b1 & 0x7F)
	control := f.Op.IsControl()
	if control {
		if length > MaxControlPayload {
			return f, 0, ErrControlTooLong
		}
		if !f.Fin {
			return f, 0, ErrControlFragmented
		}
		f.Message = f.Op
	} else {
		switch {
		case f.Op == OpContinuation && d.msgOp == 0:
			return f, 0, ErrUnexpectedContinuation
		case f.Op != OpContinuation && d.msgOp != 0:
			return f, 0, ErrExpectedContinuation
		}
	}

	hdr := 2
	switch length {
	case 126:
		if len(b) < 4 {
			return f, 0, ErrIncomplete
		}
		length = int64(binary.BigEndian.Uint16(b[2:]))
		// §5.2: "the minimal number of bytes MUST be used to encode the length". No
		// conforming sender writes a longer form; one that does is not a client to trust.
		if length < 126 {
			return f, 0, ErrLengthNotMinimal
		}
		hdr = 4
	case 127:
		if len(b) < 10 {
			return f, 0, ErrIncomplete
		}
		u := binary.BigEndian.Uint64(b[2:])
		if u>>63 != 0 {
			return f, 0, ErrLengthTopBit
		}
		if u <= 0xFFFF {
			return f, 0, ErrLengthNotMinimal
		}
		length = int64(u)
		hdr = 10
	}
	if !control {
		limit := min(maxMessage, MaxMessageLimit)
		if limit <= 0 {
			limit = DefaultMaxMessageBytes
		}
		// msgLen <= limit always holds here, so the subtraction cannot overflow even for a
		// 63-bit length, and msgLen+length below stays within 32 bits.
		if length > limit-int64(d.msgLen) {
			return f, 0, ErrMessageTooBig
		}
	}
	if masked {
		hdr += 4 // mask key
	}
	if int64(len(b)-hdr) < length {
		return f, 0, ErrIncomplete
	}
	n = hdr + int(length)
	f.Payload = b[hdr:n:n]
	if masked {
		ws.Cipher(f.Payload, [4]byte(b[hdr-4:hdr]), 0)
	}

	if control {
		if f.Op == OpClose {
			if _, _, err := ParseClose(f.Payload); err != nil {
				return f, 0, err
			}
		}
		return f, n, nil
	}
	if f.Op != OpContinuation {
		d.msgOp = f.Op
		d.utf8 = utf8Accept
	}
	f.Message = d.msgOp
	if f.Message == OpText {
		d.utf8 = d.utf8.Feed(f.Payload)
		if !d.utf8.Valid() || (f.Fin && !d.utf8.Boundary()) {
			return f, 0, ErrInvalidUTF8
		}
	}
	if f.Fin {
		d.msgOp, d.msgLen = 0, 0
	} else {
		d.msgLen += uint32(length)
	}
	return f, n, nil
}

// FrameSize returns the encoded size of an unmasked frame with an n-byte payload.
func FrameSize(n int) int { return headerSize(n) + n }

func headerSize(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xFFFF:
		return 4
	}
	return 10
}

// appendHeader appends a frame header for an n-byte payload; mask bit as given.
func appendHeader(dst []byte, op OpCode, fin bool, n int, masked byte) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	switch {
	case n <= 125:
		return append(dst, b0, masked|byte(n))
	case n <= 0xFFFF:
		return append(dst, b0, masked|126, byte(n>>8), byte(n))
	}
	dst = append(dst, b0, masked|127)
	return binary.BigEndian.AppendUint64(dst, uint64(n))
}

// AppendFrame appends an unmasked frame (server to client, RFC 6455 §5.1) to dst. It does not
// allocate when dst has room for FrameSize(len(payload)) more bytes.
func AppendFrame(dst []byte, op OpCode, fin bool, payload []byte) []byte {
	return append(appendHeader(dst, op, fin, len(payload), 0), payload...)
}

// AppendClientFrame appends a frame masked with mask (client to server, RFC 6455 §5.3) to
// dst; payload itself is not modified.
func AppendClientFrame(dst []byte, op OpCode, fin bool, payload []byte, mask [4]byte) []byte {
	dst = appendHeader(dst, op, fin, len(payload), 0x80)
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	ws.Cipher(dst[start:], mask, 0)
	return dst
}

// AppendPong appends an unmasked pong echoing payload (at most 125 bytes, as the ping's was).
func AppendPong(dst, payload []byte) []byte { return AppendFrame(dst, OpPong, true, payload) }

// Precompiled server frames. Immutable: callers must not modify them.
var (
	PingFrame = []byte{0x89, 0x00} // empty ping; the RTT is timed by the sender, not carried in the payload
	PongFrame = []byte{0x8A, 0x00} // empty pong
)

// AppendFrameHeader appends the header of an unmasked frame with an n-byte payload, for a
// caller that sends the payload from its own buffer (writev) instead of copying it.
func AppendFrameHeader(dst []byte, op OpCode, fin bool, n int) []byte {
	return appendHeader(dst, op, fin, n, 0)
}
