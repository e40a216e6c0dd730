package codec

import (
	"encoding/binary"
	"unicode/utf8"
)

// UTF8State is the state of an incremental UTF-8 validator: the zero value is "at a
// character boundary". It lets a text message be validated fragment by fragment, so an
// invalid sequence fails as soon as its bytes arrive rather than when the message
// completes (RFC 6455 §8.1).
type UTF8State uint8

// Validator states: which bytes may come next. The names follow the lead byte that
// produced them (RFC 3629 §4, the table of well-formed byte sequences).
const (
	utf8Accept  UTF8State = iota // at a boundary
	utf8Need1                    // one more 80..BF
	utf8Need2                    // two more 80..BF
	utf8Need3                    // three more 80..BF
	utf8AfterE0                  // next A0..BF, then one more (no overlongs)
	utf8AfterED                  // next 80..9F, then one more (no surrogates)
	utf8AfterF0                  // next 90..BF, then two more (no overlongs)
	utf8AfterF4                  // next 80..8F, then two more (nothing past U+10FFFF)
	utf8Reject
)

// Boundary reports whether s is at a character boundary, so a message may end here.
func (s UTF8State) Boundary() bool { return s == utf8Accept }

// Valid reports whether no invalid sequence has been seen.
func (s UTF8State) Valid() bool { return s != utf8Reject }

const asciiMask = 0x8080808080808080

// Feed advances s over p and returns the new state. Once invalid it stays invalid.
func (s UTF8State) Feed(p []byte) UTF8State {
	// At a boundary, the standard library's validator is the fast path for the usual case
	// of complete, valid text; the state machine below handles the rest (an invalid
	// sequence, or a character cut at a fragment boundary).
	if s == utf8Accept && utf8.Valid(p) {
		return utf8Accept
	}
	i := 0
	for i < len(p) {
		if s == utf8Accept {
			// ASCII fast path: skip 8 bytes at a time while no byte has its top bit set.
			for i+8 <= len(p) && binary.LittleEndian.Uint64(p[i:])&asciiMask == 0 {
				i += 8
			}
			if i == len(p) {
				break
			}
		}
		s = s.step(p[i])
		if s == utf8Reject {
			return s
		}
		i++
	}
	return s
}

func (s UTF8State) step(b byte) UTF8State {
	switch s {
	case utf8Accept:
		switch {
		case b < 0x80:
			return utf8Accept
		case b >= 0xC2 && b <= 0xDF:
			return utf8Need1
		case b == 0xE0:
			return utf8AfterE0
		case b == 0xED:
			return utf8AfterED
		case b >= 0xE1 && b <= 0xEF:
			return utf8Need2
		case b == 0xF0:
			return utf8AfterF0
		case b >= 0xF1 && b <= 0xF3:
			return utf8Need3
		case b == 0xF4:
			return utf8AfterF4
		}
		return utf8Reject
	case utf8Need1, utf8Need2, utf8Need3:
		if b&0xC0 != 0x80 {
			return utf8Reject
		}
		return s - 1 // utf8Need1-1 == utf8Accept
	case utf8AfterE0:
		if b >= 0xA0 && b <= 0xBF {
			return utf8Need1
		}
	case utf8AfterED:
		if b >= 0x80 && b <= 0x9F {
			return utf8Need1
		}
	case utf8AfterF0:
		if b >= 0x90 && b <= 0xBF {
			return utf8Need2
		}
	case utf8AfterF4:
		if b >= 0x80 && b <= 0x8F {
			return utf8Need2
		}
	}
	return utf8Reject
}

// ValidUTF8 reports whether p is complete, valid UTF-8.
func ValidUTF8(p []byte) bool { return utf8Accept.Feed(p) == utf8Accept }
