package codec_test

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"unicode/utf8"

	"github.com/wsreactor/wsreactor/codec"
)

// validPrefix reports whether p can be extended to valid UTF-8: every complete sequence
// is valid and the bytes after the last one are the start of a valid sequence. It is the
// oracle for fail-fast validation. utf8.FullRune is false exactly for such a start.
func validPrefix(p []byte) bool {
	for len(p) > 0 {
		r, size := utf8.DecodeRune(p)
		if r == utf8.RuneError && size == 1 {
			return !utf8.FullRune(p)
		}
		p = p[size:]
	}
	return true
}

// checkFeed feeds p to a fresh UTF8State in the chunks that cuts delimit (increasing
// offsets into p) and checks the state after every chunk against the oracles.
func checkFeed(t *testing.T, p []byte, cuts []int) {
	t.Helper()
	var s codec.UTF8State
	start := 0
	for _, end := range append(cuts, len(p)) {
		s = s.Feed(p[start:end])
		prefix := p[:end]
		if s.Valid() != validPrefix(prefix) || s.Boundary() != utf8.Valid(prefix) {
			t.Fatalf(
				"%q cut at %v: after %d bytes Valid, Boundary = %v, %v; want %v, %v",
				p, cuts, end, s.Valid(), s.Boundary(), validPrefix(prefix), utf8.Valid(prefix))
		}
		start = end
	}
	if got, want := s.Valid() && s.Boundary(), utf8.Valid(p); got != want {
		t.Fatalf(
			"%q cut at %v: Feed says %v, utf8.Valid %v",
			p, cuts, got, want)
	}
}

// checkAllFeeds checks ValidUTF8, Feed of the whole, byte by byte, and split in two at
// every offset.
func checkAllFeeds(t *testing.T, p []byte) {
	t.Helper()
	if got, want := codec.ValidUTF8(p), utf8.Valid(p); got != want {
		t.Fatalf(
			"ValidUTF8(%q) = %v, utf8.Valid = %v",
			p, got, want)
	}
	checkFeed(t, p, nil)
	bytewise := make([]int, 0, len(p))
	for i := 1; i < len(p); i++ {
		bytewise = append(bytewise, i)
	}
	checkFeed(t, p, bytewise)
	for i := 0; i <= len(p); i++ {
		checkFeed(t, p, []int{i})
	}
}

func TestValidUTF8Table(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{name: "empty", in: "", want: true},
		{name: "ASCII", in: "hello, world", want: true},
		{name: "NUL and DEL", in: "\x00\x7f", want: true},
		{name: "U+0080", in: "\xc2\x80", want: true},
		{name: "U+07FF", in: "\xdf\xbf", want: true},
		{name: "U+0800", in: "\xe0\xa0\x80", want: true},
		{name: "euro sign", in: "\xe2\x82\xac", want: true},
		{name: "U+D7FF", in: "\xed\x9f\xbf", want: true},
		{name: "U+E000", in: "\xee\x80\x80", want: true},
		{name: "U+FFFD", in: "\xef\xbf\xbd", want: true},
		{name: "U+FFFF", in: "\xef\xbf\xbf", want: true},
		{name: "U+10000", in: "\xf0\x90\x80\x80", want: true},
		{name: "emoji", in: "\xf0\x9f\x98\x80", want: true},
		{name: "U+10FFFF", in: "\xf4\x8f\xbf\xbf", want: true},
		{name: "mixed", in: "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z", want: true},
		{name: "overlong NUL C0 80", in: "\xc0\x80", want: false},
		{name: "overlong C1 BF", in: "\xc1\xbf", want: false},
		{name: "overlong E0 80 80", in: "\xe0\x80\x80", want: false},
		{name: "overlong E0 9F BF", in: "\xe0\x9f\xbf", want: false},
		{name: "overlong F0 80 80 80", in: "\xf0\x80\x80\x80", want: false},
		{name: "overlong F0 8F BF BF", in: "\xf0\x8f\xbf\xbf", want: false},
		{name: "surrogate ED A0 80", in: "\xed\xa0\x80", want: false},
		{name: "surrogate ED BF BF", in: "\xed\xbf\xbf", want: false},
		{name: "surrogate pair", in: "\xed\xa0\xbd\xed\xb8\x80", want: false},
		{name: "U+110000 F4 90 80 80", in: "\xf4\x90\x80\x80", want: false},
		{name: "F5", in: "\xf5\x80\x80\x80", want: false},
		{name: "F7", in: "\xf7\xbf\xbf\xbf", want: false},
		{name: "F8 5-byte form", in: "\xf8\x88\x80\x80\x80", want: false},
		{name: "FC 6-byte form", in: "\xfc\x84\x80\x80\x80\x80", want: false},
		{name: "FE", in: "\xfe", want: false},
		{name: "FF", in: "\xff", want: false},
		{name: "lone continuation 80", in: "\x80", want: false},
		{name: "lone continuation BF", in: "a\xbfb", want: false},
		{name: "truncated 2-byte", in: "\xc3", want: false},
		{name: "truncated 3-byte", in: "\xe2\x82", want: false},
		{name: "truncated 4-byte", in: "\xf0\x9f\x98", want: false},
		{name: "truncated 3-byte then ASCII", in: "\xe2\x82a", want: false},
		{name: "truncated 4-byte then ASCII", in: "\xf0\x9fab", want: false},
		{name: "2-byte lead then lead", in: "\xc3\xc3\xa9", want: false},
		{name: "extra continuation", in: "\xc3\xa9\xa9", want: false},
		{name: "E0 A0 then non-continuation", in: "\xe0\xa0\xc0", want: false},
		{name: "F4 8F then ASCII", in: "\xf4\x8f\x41\x41", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if utf8.Valid([]byte(tt.in)) != tt.want {
				t.Fatalf(
					"bad test: utf8.Valid(%q) = %v",
					tt.in, !tt.want)
			}
			// Alone, and with ASCII on either side so that the fast path runs into the
			// sequence and resumes after it.
			for pad := 0; pad <= 17; pad++ {
				left := bytes.Repeat([]byte("L"), pad)
				right := bytes.Repeat([]byte("R"), 17-pad)
				for _, p := range [][]byte{
					[]byte(tt.in),
					append(append(bytes.Clone(left), tt.in...), right...),
					append(bytes.Clone(left), tt.in...),
					append([]byte(tt.in), right...),
				} {
					checkAllFeeds(t, p)
				}
			}
		})
	}
}

func TestValidUTF8ASCIIFastPath(t *testing.T) {
	bad := []string{"\x80", "\xbf", "\xc0", "\xc3", "\xe2\x82", "\xed\xa0\x80", "\xf4\x90", "\xff"}
	good := []string{"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"}
	for n := 1; n <= 40; n++ {
		for pos := 0; pos < n; pos++ {
			for _, seq := range append(bad, good...) {
				p := bytes.Repeat([]byte("a"), n)
				p = append(p[:pos], append([]byte(seq), p[pos+1:]...)...)
				if got, want := codec.ValidUTF8(p), utf8.Valid(p); got != want {
					t.Fatalf(
						"ValidUTF8(%q) = %v, want %v",
						p, got, want)
				}
				checkFeed(t, p, nil)
				checkFeed(t, p, []int{pos})
				checkFeed(t, p, []int{pos + 1})
			}
		}
	}
}

func TestUTF8StateStaysInvalid(t *testing.T) {
	s := codec.UTF8State(0).Feed([]byte("ok\xff"))
	if s.Valid() {
		t.Fatal("Valid after 0xFF")
	}
	for _, more := range []string{"", "ascii only, longer than eight bytes", "\xc3\xa9", "\x80"} {
		s = s.Feed([]byte(more))
		if s.Valid() || s.Boundary() {
			t.Fatalf(
				"after %q: Valid, Boundary = %v, %v; want false, false",
				more, s.Valid(), s.Boundary())
		}
	}
}

// TestUTF8Exhaustive checks every 1- and 2-byte input, and 3- and 4-byte inputs whose
// later bytes are drawn from the edges of the ranges in RFC 3629 §4.
func TestUTF8Exhaustive(t *testing.T) {
	edges := []byte{0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF}
	check := func(p []byte) {
		var s codec.UTF8State
		for i := range p {
			s = s.Feed(p[i : i+1])
			if s.Valid() != validPrefix(p[:i+1]) {
				t.Fatalf(
					"% x: Valid after %d bytes = %v",
					p, i+1, s.Valid())
			}
		}
		if got, want := s.Valid() && s.Boundary(), utf8.Valid(p); got != want || codec.ValidUTF8(p) != want {
			t.Fatalf(
				"% x: Feed %v, ValidUTF8 %v, utf8.Valid %v",
				p, got, codec.ValidUTF8(p), want)
		}
	}
	for a := range 256 {
		check([]byte{byte(a)})
		for b := range 256 {
			check([]byte{byte(a), byte(b)})
		}
		for _, b := range edges {
			for _, c := range edges {
				check([]byte{byte(a), b, c})
				for _, d := range edges {
					check([]byte{byte(a), b, c, d})
				}
			}
		}
	}
}

// randomUTF8 returns mostly valid UTF-8 of up to 80 runes, mutated at random about half
// the time.
func randomUTF8(rng *rand.Rand) []byte {
	var p []byte
	for range rng.IntN(81) {
		var r rune
		switch rng.IntN(5) {
		case 0, 1:
			r = rune(rng.IntN(0x80))
		case 2:
			r = rune(0x80 + rng.IntN(0x800-0x80))
		case 3:
			r = rune(0x800 + rng.IntN(0x10000-0x800))
			if r >= 0xD800 && r <= 0xDFFF {
				r = 0xFFFD
			}
		default:
			r = rune(0x10000 + rng.IntN(0x110000-0x10000))
		}
		p = utf8.AppendRune(p, r)
	}
	interesting := []byte{0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF}
	if rng.IntN(2) == 0 {
		for range 1 + rng.IntN(3) {
			if len(p) == 0 {
				break
			}
			i := rng.IntN(len(p))
			b := interesting[rng.IntN(len(interesting))]
			if rng.IntN(4) == 0 {
				b = byte(rng.Uint32())
			}
			switch rng.IntN(4) {
			case 0: // replace
				p[i] = b
			case 1: // insert
				p = append(p[:i], append([]byte{b}, p[i:]...)...)
			case 2: // delete
				p = append(p[:i], p[i+1:]...)
			default: // truncate
				p = p[:i]
			}
		}
	}
	return p
}

func TestUTF8FeedAnySplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(3629, 8))
	for range 20000 {
		p := randomUTF8(rng)
		var cuts []int
		if len(p) > 0 {
			for at := rng.IntN(len(p) + 1); at <= len(p); at += 1 + rng.IntN(len(p)/2+1) {
				cuts = append(cuts, at)
			}
		}
		checkFeed(t, p, cuts)
	}
}

func FuzzUTF8(f *testing.F) {
	f.Add([]byte("hello, world"), uint16(5))
	f.Add([]byte("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), uint16(4))
	f.Add([]byte("\xed\xa0\x80"), uint16(1))
	f.Add([]byte("\xf4\x90\x80\x80"), uint16(2))
	f.Add([]byte("0123456789abcdef\xc0\x80"), uint16(16))
	f.Add([]byte("\xe0\x9f\xbf"), uint16(0))
	f.Fuzz(func(t *testing.T, p []byte, split uint16) {
		at := int(split) % (len(p) + 1)
		checkFeed(t, p, []int{at})
	})
}
