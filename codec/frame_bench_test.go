package codec_test

import (
	"fmt"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/wsreactor/wsreactor/codec"
)

// benchSizes are the payload sizes of the frame benchmarks: a typical chat or ticker
// message, and a page-sized one.
var benchSizes = []int{64, 4096}

// asciiText returns n bytes of printable ASCII that look like a JSON message.
func asciiText(n int) []byte {
	const sample = `{"channel":"ticker","seq":12345,"price":"101.25","side":"buy"}`
	p := make([]byte, n)
	for i := range p {
		p[i] = sample[i%len(sample)]
	}
	return p
}

// mixedText returns exactly n bytes of valid UTF-8 mixing ASCII with 2-, 3- and 4-byte
// characters, padded with ASCII where the next character would not fit.
func mixedText(n int) []byte {
	runes := []rune("price € 101, ½ off — 价格 😀 Цена ")
	p := make([]byte, 0, n)
	for i := 0; ; i++ {
		r := runes[i%len(runes)]
		if len(p)+utf8.RuneLen(r) > n {
			break
		}
		p = utf8.AppendRune(p, r)
	}
	for len(p) < n {
		p = append(p, ' ')
	}
	return p
}

// BenchmarkDecode decodes the same masked text frame over and over. Decode unmasks in
// place, so each iteration re-masks the payload with ws.Cipher to restore the frame;
// BenchmarkDecodeRemaskBaseline measures that restore step alone, to subtract.
func BenchmarkDecode(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			mask := [4]byte{0x12, 0x34, 0x56, 0x78}
			frame := codec.AppendClientFrame(nil, codec.OpText, true, asciiText(size), mask)
			var d codec.Decoder
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				f, n, err := d.Decode(frame, 0)
				if err != nil || n != len(frame) {
					b.Fatalf(
						"Decode = %d, %v",
						n, err)
				}
				ws.Cipher(f.Payload, mask, 0)
			}
		})
	}
}

// BenchmarkDecodeRemaskBaseline is the re-masking step of BenchmarkDecode on its own.
func BenchmarkDecodeRemaskBaseline(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			mask := [4]byte{0x12, 0x34, 0x56, 0x78}
			payload := asciiText(size)
			b.SetBytes(int64(codec.FrameSize(size) + 4))
			b.ReportAllocs()
			for b.Loop() {
				ws.Cipher(payload, mask, 0)
			}
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	b.Run("size=64", func(b *testing.B) {
		payload := asciiText(64)
		var buf []byte
		b.SetBytes(int64(codec.FrameSize(len(payload))))
		b.ReportAllocs()
		for b.Loop() {
			buf = codec.AppendFrame(buf[:0], codec.OpText, true, payload)
		}
	})
}

func BenchmarkAppendClientFrame(b *testing.B) {
	b.Run("size=64", func(b *testing.B) {
		payload := asciiText(64)
		mask := [4]byte{0x12, 0x34, 0x56, 0x78}
		var buf []byte
		b.SetBytes(int64(codec.FrameSize(len(payload)) + 4))
		b.ReportAllocs()
		for b.Loop() {
			buf = codec.AppendClientFrame(buf[:0], codec.OpText, true, payload, mask)
		}
	})
}

// BenchmarkUTF8 validates 4 KiB of text with ValidUTF8 and, as the baseline twin, with
// the standard library's utf8.Valid.
func BenchmarkUTF8(b *testing.B) {
	texts := []struct {
		name string
		text []byte
	}{
		{
			name: "ascii",
			text: asciiText(4096),
		},
		{
			name: "mixed",
			text: mixedText(4096),
		},
	}
	impls := []struct {
		name  string
		valid func([]byte) bool
	}{
		{
			name:  "codec",
			valid: codec.ValidUTF8,
		},
		{
			name:  "std",
			valid: utf8.Valid,
		},
	}
	for _, tt := range texts {
		for _, impl := range impls {
			b.Run(fmt.Sprintf("text=%s/impl=%s/size=%d", tt.name, impl.name, len(tt.text)), func(b *testing.B) {
				if !impl.valid(tt.text) {
					b.Fatal("benchmark text is not valid UTF-8")
				}
				b.SetBytes(int64(len(tt.text)))
				b.ReportAllocs()
				for b.Loop() {
					if !impl.valid(tt.text) {
						b.Fatal("invalid")
					}
				}
			})
		}
	}
}
