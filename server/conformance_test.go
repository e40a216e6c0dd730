package server_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// htConfCase is one RFC 6455 exchange: the client's writes, then the server's frames byte for
// byte. The cases re-express the Autobahn TestSuite's sections 1-7 with the project's own
// client frame encoder (codec.AppendClientFrame) and a reader that checks raw bytes.
type htConfCase struct {
	name   string
	writes [][]byte // the client's writes, in order; each element is one write(2)
	want   [][]byte // the server's frames, exactly, in order
	// open: the connection is still open after want, so the runner closes it with 1000
	// and expects exactly the echo of 1000 and EOF. Otherwise the server must end the
	// connection right after the last frame of want (a close frame).
	open bool
}

// htConfMax is the server's MaxMessageBytes for these tests: large enough for the 16 MiB
// echo (Autobahn 9.x-sized).
const htConfMax = 16 << 20

// TestConformance runs RFC 6455 §5-§7 cases against one echo server.
func TestConformance(t *testing.T) {
	s := servertest.Start(t, server.Options{
		Loops:           2,
		MaxMessageBytes: htConfMax,
		// The echo of a 16 MiB message is queued whole when the peer has not read yet;
		// the limit must not take that for a slow consumer.
		SendBufferLimit: 2 * htConfMax,
	})
	for _, section := range []struct {
		name  string
		cases []htConfCase
	}{
		{"1 echo and framing", htConfEchoCases()},
		{"2 ping and pong", htConfPingCases()},
		{"3 reserved bits", htConfRSVCases()},
		{"4 reserved opcodes", htConfOpcodeCases()},
		{"5 fragmentation", htConfFragmentCases()},
		{"6 UTF-8", htConfUTF8Cases()},
		{"7 close", htConfCloseCases()},
	} {
		t.Run(section.name, func(t *testing.T) {
			names := map[string]bool{}
			for _, tc := range section.cases {
				if names[tc.name] {
					t.Fatalf("duplicate case name %q", tc.name)
				}
				names[tc.name] = true
				t.Run(tc.name, func(t *testing.T) { htConfRun(t, s, tc) })
			}
		})
	}
	// Nothing of the cases is left behind.
	s.WaitMetric(t, "ws_connections_active", 0)
	s.WaitMetric(t, "ws_send_buffer_bytes", 0)
	htHealthyEcho(t, s)
}

// htConfRun runs one case on a fresh connection.
func htConfRun(t *testing.T, s *servertest.Server, tc htConfCase) {
	c := htUpgrade(t, s.Addr)
	defer c.nc.Close()
	total := 0
	for _, w := range tc.writes {
		total += len(w)
	}
	// Big writes go from a goroutine so the server's echo never waits on this reader.
	werr := make(chan error, 1)
	go func() {
		for _, w := range tc.writes {
			_ = c.nc.SetWriteDeadline(time.Now().Add(4 * htSlack))
			if _, err := c.nc.Write(w); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	if total < 1<<20 {
		if err := <-werr; err != nil {
			t.Fatalf("write: %v", err)
		}
		werr <- nil
	}
	deadline := time.Now().Add(4 * htSlack)
	for i, want := range tc.want {
		f, err := c.readFrame(time.Until(deadline))
		if err != nil {
			t.Fatalf("server frame %d of %d: %v; want %s", i+1, len(tc.want), err, htConfShow(want))
		}
		if !bytes.Equal(f.raw, want) {
			t.Fatalf("server frame %d of %d = %s, want %s", i+1, len(tc.want), htConfShow(f.raw), htConfShow(want))
		}
	}
	if err := <-werr; err != nil && !(htIsClosed(err) && !tc.open) {
		t.Fatalf("write: %v", err)
	}
	if tc.open {
		c.write(t, htMasked(codec.OpClose, true, htClosePayload(1000, "")))
		f, err := c.readFrame(htSlack)
		if want := htConfClose(1000); err != nil || !bytes.Equal(f.raw, want) {
			t.Fatalf("closing: got %s, %v; want %s", htConfShow(f.raw), err, htConfShow(want))
		}
	}
	if err := c.expectEOF(htSlack); err != nil {
		t.Fatalf("after the last frame: %v", err)
	}
}

// htConfShow prints a frame short enough for a failure message.
func htConfShow(b []byte) string {
	if len(b) > 40 {
		return fmt.Sprintf("%x... (%d bytes)", b[:40], len(b))
	}
	return fmt.Sprintf("%x", b)
}

// htConfFrame is the unmasked server frame for a whole message or control frame, encoded
// here by hand (not with codec) so the server's encoder is checked independently.
func htConfFrame(op codec.OpCode, payload []byte) []byte {
	b := []byte{0x80 | byte(op)}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, byte(n))
	case n <= 0xFFFF:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// htConfClose is the server's close frame with code and no reason; 0 means no payload.
func htConfClose(code codec.CloseCode) []byte {
	if code == 0 {
		return []byte{0x88, 0x00}
	}
	return []byte{0x88, 0x02, byte(code >> 8), byte(code)}
}

func htOne(frames ...[]byte) [][]byte  { return [][]byte{htCat(frames...)} } // all in one write
func htEach(frames ...[]byte) [][]byte { return frames }                     // one write per frame

// bytewise splits b into one write per byte.
func htBytewise(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

// chunks splits b into writes of at most n bytes.
func htChunks(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out, b = append(out, b[:n]), b[n:]
	}
	return append(out, b)
}

// htConfText returns exactly n bytes of valid UTF-8 mixing 1- to 4-byte characters.
func htConfText(n int) []byte {
	const pattern = "aé€😀 κόσμε 日本 "
	b := make([]byte, 0, n)
	for len(b) < n {
		for _, r := range pattern {
			if s := string(r); len(b)+len(s) <= n {
				b = append(b, s...)
			} else {
				b = append(b, bytes.Repeat([]byte("x"), n-len(b))...)
				break
			}
		}
	}
	return b
}

// htConfBinary returns n bytes covering every byte value (not valid UTF-8).
func htConfBinary(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + i>>8)
	}
	return b
}

// fragments sends payload as a message of op in n fragments split at even byte offsets
// (which fall inside characters for a multi-byte text).
func htFragments(op codec.OpCode, payload []byte, n int) [][]byte {
	var out [][]byte
	for i := range n {
		lo, hi := len(payload)*i/n, len(payload)*(i+1)/n
		fop := op
		if i > 0 {
			fop = codec.OpContinuation
		}
		out = append(out, htMasked(fop, i == n-1, payload[lo:hi]))
	}
	return out
}

// 1.x (and 9.x-sized): echo of text and binary at every length-encoding boundary.
func htConfEchoCases() []htConfCase {
	var cases []htConfCase
	for _, n := range []int{0, 125, 126, 127, 128, 65535, 65536} {
		for _, m := range []struct {
			name string
			op   codec.OpCode
			p    []byte
		}{{"text", codec.OpText, htConfText(n)}, {"binary", codec.OpBinary, htConfBinary(n)}} {
			cases = append(cases, htConfCase{
				name:   m.name + " " + strconv.Itoa(n),
				writes: htOne(htMasked(m.op, true, m.p)),
				want:   [][]byte{htConfFrame(m.op, m.p)},
				open:   true,
			})
		}
	}
	big := htConfText(htConfMax)
	cases = append(cases,
		htConfCase{
			name:   "text 16 MiB",
			writes: htChunks(htMasked(codec.OpText, true, big), 1<<20),
			want:   [][]byte{htConfFrame(codec.OpText, big)},
			open:   true,
		},
		htConfCase{
			name:   "text 130 one byte per write",
			writes: htBytewise(htMasked(codec.OpText, true, htConfText(130))),
			want:   [][]byte{htConfFrame(codec.OpText, htConfText(130))},
			open:   true,
		},
		htConfCase{
			name: "binary 65536 header byte by byte then 1000-byte writes",
			writes: func() [][]byte {
				f := htMasked(codec.OpBinary, true, htConfBinary(65536))
				return append(htBytewise(f[:14]), htChunks(f[14:], 1000)...)
			}(),
			want: [][]byte{htConfFrame(codec.OpBinary, htConfBinary(65536))},
			open: true,
		},
		htConfCase{
			name:   "three messages in one write",
			writes: htOne(htMasked(codec.OpText, true, []byte("one")), htMasked(codec.OpBinary, true, []byte{2}), htMasked(codec.OpText, true, []byte("three"))),
			want:   [][]byte{htConfFrame(codec.OpText, []byte("one")), htConfFrame(codec.OpBinary, []byte{2}), htConfFrame(codec.OpText, []byte("three"))},
			open:   true,
		},
		htConfCase{
			name: "two messages split inside the second mask key",
			writes: func() [][]byte {
				b := htCat(htMasked(codec.OpText, true, []byte("first")), htMasked(codec.OpText, true, []byte("second")))
				cut := len(htMasked(codec.OpText, true, []byte("first"))) + 2 + 2 // header, then half the mask
				return [][]byte{b[:cut], b[cut:]}
			}(),
			want: [][]byte{htConfFrame(codec.OpText, []byte("first")), htConfFrame(codec.OpText, []byte("second"))},
			open: true,
		},
	)
	return cases
}

// 2.x: pings are answered with pongs carrying the same payload; pongs need no answer.
func htConfPingCases() []htConfCase {
	p125 := htConfBinary(125)
	tenPings, tenPongs := [][]byte{}, [][]byte{}
	for i := range 10 {
		p := []byte("ping " + strconv.Itoa(i))
		tenPings = append(tenPings, htMasked(codec.OpPing, true, p))
		tenPongs = append(tenPongs, htConfFrame(codec.OpPong, p))
	}
	return []htConfCase{
		{name: "ping empty", writes: htOne(htMasked(codec.OpPing, true, nil)), want: [][]byte{{0x8A, 0x00}}, open: true},
		{name: "ping 125 bytes", writes: htOne(htMasked(codec.OpPing, true, p125)), want: [][]byte{htConfFrame(codec.OpPong, p125)}, open: true},
		{name: "ping text payload", writes: htOne(htMasked(codec.OpPing, true, []byte("Hello, wörld"))), want: [][]byte{htConfFrame(codec.OpPong, []byte("Hello, wörld"))}, open: true},
		{name: "ping 125 bytes one byte per write", writes: htBytewise(htMasked(codec.OpPing, true, p125)), want: [][]byte{htConfFrame(codec.OpPong, p125)}, open: true},
		{name: "ten pings in one write", writes: htOne(tenPings...), want: tenPongs, open: true},
		{name: "ping 126 bytes", writes: htOne(htMasked(codec.OpPing, true, htConfBinary(126))), want: [][]byte{htConfClose(1002)}},
		{
			name:   "unsolicited pong empty is ignored",
			writes: htOne(htMasked(codec.OpPong, true, nil), htMasked(codec.OpText, true, []byte("after pong"))),
			want:   [][]byte{htConfFrame(codec.OpText, []byte("after pong"))},
			open:   true,
		},
		{
			name:   "unsolicited pong with payload is ignored",
			writes: htEach(htMasked(codec.OpPong, true, []byte("unsolicited")), htMasked(codec.OpText, true, []byte("after pong"))),
			want:   [][]byte{htConfFrame(codec.OpText, []byte("after pong"))},
			open:   true,
		},
		{
			name:   "unsolicited pong then ping",
			writes: htOne(htMasked(codec.OpPong, true, []byte("p")), htMasked(codec.OpPing, true, []byte("q"))),
			want:   [][]byte{htConfFrame(codec.OpPong, []byte("q"))},
			open:   true,
		},
	}
}

// 3.x: RSV bits without a negotiated extension fail the connection with 1002; frames before
// the bad one are processed, frames after it are not.
func htConfRSVCases() []htConfCase {
	hello := []byte("Hello")
	var cases []htConfCase
	for _, r := range []struct {
		name string
		bits byte
	}{{"RSV1", 0x40}, {"RSV2", 0x20}, {"RSV3", 0x10}, {"RSV1+RSV3", 0x50}, {"RSV1+2+3", 0x70}} {
		cases = append(cases,
			htConfCase{name: r.name + " text", writes: htOne(htRSV(htMasked(codec.OpText, true, hello), r.bits)), want: [][]byte{htConfClose(1002)}},
			htConfCase{name: r.name + " binary", writes: htOne(htRSV(htMasked(codec.OpBinary, true, htConfBinary(10)), r.bits)), want: [][]byte{htConfClose(1002)}},
			htConfCase{name: r.name + " ping", writes: htOne(htRSV(htMasked(codec.OpPing, true, hello), r.bits)), want: [][]byte{htConfClose(1002)}},
			htConfCase{name: r.name + " close", writes: htOne(htRSV(htMasked(codec.OpClose, true, htClosePayload(1000, "")), r.bits)), want: [][]byte{htConfClose(1002)}},
			htConfCase{
				name:   r.name + " after a text, before a ping, one write",
				writes: htOne(htMasked(codec.OpText, true, hello), htRSV(htMasked(codec.OpText, true, hello), r.bits), htMasked(codec.OpPing, true, nil)),
				want:   [][]byte{htConfFrame(codec.OpText, hello), htConfClose(1002)},
			},
			htConfCase{
				name:   r.name + " after a text, before a ping, separate writes",
				writes: htEach(htMasked(codec.OpText, true, hello), htRSV(htMasked(codec.OpText, true, hello), r.bits), htMasked(codec.OpPing, true, nil)),
				want:   [][]byte{htConfFrame(codec.OpText, hello), htConfClose(1002)},
			},
		)
	}
	cases = append(cases, htConfCase{
		name:   "RSV1 on a continuation",
		writes: htOne(htMasked(codec.OpText, false, hello), htRSV(htMasked(codec.OpContinuation, true, hello), 0x40)),
		want:   [][]byte{htConfClose(1002)},
	})
	return cases
}

// 4.x: reserved opcodes (3-7 data, 11-15 control) fail the connection with 1002.
func htConfOpcodeCases() []htConfCase {
	hello := []byte("Hello")
	var cases []htConfCase
	for _, op := range []codec.OpCode{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		name := "opcode " + strconv.Itoa(int(op))
		cases = append(cases,
			htConfCase{name: name + " empty", writes: htOne(htMasked(op, true, nil)), want: [][]byte{htConfClose(1002)}},
			htConfCase{name: name + " with payload", writes: htOne(htMasked(op, true, hello)), want: [][]byte{htConfClose(1002)}},
			htConfCase{
				name:   name + " between a text and a ping",
				writes: htOne(htMasked(codec.OpText, true, hello), htMasked(op, true, hello), htMasked(codec.OpPing, true, nil)),
				want:   [][]byte{htConfFrame(codec.OpText, hello), htConfClose(1002)},
			},
			htConfCase{
				name:   name + " not final",
				writes: htEach(htMasked(codec.OpText, true, hello), htMasked(op, false, hello)),
				want:   [][]byte{htConfFrame(codec.OpText, hello), htConfClose(1002)},
			},
		)
	}
	return cases
}

// 5.x: fragmentation.
func htConfFragmentCases() []htConfCase {
	msg := htConfText(200)
	var cases []htConfCase
	for _, n := range []int{1, 2, 3, 4, 5, 8, 13, 64, 200} {
		cases = append(cases,
			htConfCase{
				name:   "text in " + strconv.Itoa(n) + " fragments, one write",
				writes: htOne(htFragments(codec.OpText, msg, n)...),
				want:   [][]byte{htConfFrame(codec.OpText, msg)},
				open:   true,
			},
			htConfCase{
				name:   "binary in " + strconv.Itoa(n) + " fragments, one write per fragment",
				writes: htFragments(codec.OpBinary, htConfBinary(200), n),
				want:   [][]byte{htConfFrame(codec.OpBinary, htConfBinary(200))},
				open:   true,
			},
		)
	}
	f := htFragments(codec.OpText, msg, 3)
	pingA, pingB := htMasked(codec.OpPing, true, []byte("A")), htMasked(codec.OpPing, true, []byte("B"))
	pongA, pongB := htConfFrame(codec.OpPong, []byte("A")), htConfFrame(codec.OpPong, []byte("B"))
	return append(cases,
		htConfCase{name: "ping not final", writes: htOne(htMasked(codec.OpPing, false, []byte("x")), htMasked(codec.OpContinuation, true, []byte("y"))), want: [][]byte{htConfClose(1002)}},
		htConfCase{name: "pong not final", writes: htOne(htMasked(codec.OpPong, false, []byte("x")), htMasked(codec.OpContinuation, true, []byte("y"))), want: [][]byte{htConfClose(1002)}},
		htConfCase{
			name:   "pings between fragments, one write",
			writes: htOne(f[0], pingA, f[1], pingB, f[2]),
			want:   [][]byte{pongA, pongB, htConfFrame(codec.OpText, msg)},
			open:   true,
		},
		htConfCase{
			name:   "pings between fragments, separate writes",
			writes: htEach(f[0], pingA, f[1], pingB, f[2]),
			want:   [][]byte{pongA, pongB, htConfFrame(codec.OpText, msg)},
			open:   true,
		},
		htConfCase{
			name:   "pings between fragments, one byte per write",
			writes: htBytewise(htCat(f[0], pingA, f[1], pingB, f[2])),
			want:   [][]byte{pongA, pongB, htConfFrame(codec.OpText, msg)},
			open:   true,
		},
		htConfCase{
			name:   "pong between fragments is ignored",
			writes: htOne(f[0], htMasked(codec.OpPong, true, []byte("p")), f[1], f[2]),
			want:   [][]byte{htConfFrame(codec.OpText, msg)},
			open:   true,
		},
		htConfCase{
			name:   "empty fragments",
			writes: htOne(htMasked(codec.OpText, false, nil), htMasked(codec.OpContinuation, false, nil), htMasked(codec.OpContinuation, true, nil)),
			want:   [][]byte{{0x81, 0x00}},
			open:   true,
		},
		htConfCase{
			name:   "empty first and last fragments around data",
			writes: htOne(htMasked(codec.OpBinary, false, nil), htMasked(codec.OpContinuation, false, []byte{1, 2, 3}), htMasked(codec.OpContinuation, true, nil)),
			want:   [][]byte{{0x82, 0x03, 1, 2, 3}},
			open:   true,
		},
		htConfCase{
			name:   "continuation final without a message",
			writes: htOne(htMasked(codec.OpContinuation, true, []byte("x"))),
			want:   [][]byte{htConfClose(1002)},
		},
		htConfCase{
			name:   "continuation not final without a message",
			writes: htOne(htMasked(codec.OpContinuation, false, []byte("x")), htMasked(codec.OpContinuation, true, []byte("y"))),
			want:   [][]byte{htConfClose(1002)},
		},
		htConfCase{
			name:   "continuation after a complete message",
			writes: htOne(htMasked(codec.OpText, true, []byte("done")), htMasked(codec.OpContinuation, true, []byte("more"))),
			want:   [][]byte{htConfFrame(codec.OpText, []byte("done")), htConfClose(1002)},
		},
		htConfCase{
			name:   "continuation after a complete fragmented message",
			writes: htEach(f[0], f[1], f[2], htMasked(codec.OpContinuation, true, []byte("more"))),
			want:   [][]byte{htConfFrame(codec.OpText, msg), htConfClose(1002)},
		},
		htConfCase{
			name:   "text final inside a fragmented message",
			writes: htOne(htMasked(codec.OpText, false, []byte("a")), htMasked(codec.OpText, true, []byte("b"))),
			want:   [][]byte{htConfClose(1002)},
		},
		htConfCase{
			name:   "binary not final inside a fragmented text",
			writes: htEach(htMasked(codec.OpText, false, []byte("a")), htMasked(codec.OpBinary, false, []byte("b")), htMasked(codec.OpContinuation, true, []byte("c"))),
			want:   [][]byte{htConfClose(1002)},
		},
		htConfCase{
			name:   "message after a fragmented one echoes",
			writes: htOne(f[0], f[1], f[2], htMasked(codec.OpBinary, true, []byte{9})),
			want:   [][]byte{htConfFrame(codec.OpText, msg), {0x82, 0x01, 9}},
			open:   true,
		},
	)
}

// htConfValidUTF8 are texts that must echo intact (RFC 3629; noncharacters are valid UTF-8).
var htConfValidUTF8 = []struct{ name, s string }{
	{"greek kosme", "κόσμε"},
	{"latin-1 mix", "Hello-µ@ßöäüàá-UTF-8!!"},
	{"U+0000", "\x00"},
	{"U+007F", "\x7f"},
	{"U+0080", "\xc2\x80"},
	{"U+07FF", "\xdf\xbf"},
	{"U+0800", "\xe0\xa0\x80"},
	{"U+D7FF", "\xed\x9f\xbf"},
	{"U+E000", "\xee\x80\x80"},
	{"U+FFFD", "\xef\xbf\xbd"},
	{"U+FFFE", "\xef\xbf\xbe"},
	{"U+FFFF", "\xef\xbf\xbf"},
	{"U+10000", "\xf0\x90\x80\x80"},
	{"U+10FFFF", "\xf4\x8f\xbf\xbf"},
	{"emoji and symbols", "😀🎉 ✓ € ∑"},
	{"CJK", "日本語のテキスト"},
}

// htConfInvalidUTF8 are texts that must fail with 1007 (RFC 3629 §3-§4, Markus Kuhn's
// decoder stress test classes).
var htConfInvalidUTF8 = []struct{ name, s string }{
	{"lone continuation 80", "\x80"},
	{"lone continuation BF", "\xbf"},
	{"continuation run", "\x80\xbf\x80\xbf"},
	{"lead C0", "\xc0"},
	{"lead C1", "\xc1"},
	{"lead F5", "\xf5\x80\x80\x80"},
	{"lead F8 five-byte form", "\xf8\x88\x80\x80\x80"},
	{"lead FC six-byte form", "\xfc\x84\x80\x80\x80\x80"},
	{"byte FE", "\xfe"},
	{"byte FF", "\xff"},
	{"overlong slash 2 bytes", "\xc0\xaf"},
	{"overlong slash 3 bytes", "\xe0\x80\xaf"},
	{"overlong slash 4 bytes", "\xf0\x80\x80\xaf"},
	{"overlong max 2 bytes", "\xc1\xbf"},
	{"overlong max 3 bytes", "\xe0\x9f\xbf"},
	{"overlong max 4 bytes", "\xf0\x8f\xbf\xbf"},
	{"overlong NUL", "\xc0\x80"},
	{"surrogate D800", "\xed\xa0\x80"},
	{"surrogate DFFF", "\xed\xbf\xbf"},
	{"surrogate pair", "\xed\xa0\x80\xed\xb0\x80"},
	{"above U+10FFFF", "\xf4\x90\x80\x80"},
	{"F7 BF BF BF", "\xf7\xbf\xbf\xbf"},
	{"2-byte lead then ASCII", "\xc2A"},
	{"3-byte lead then ASCII", "\xe2\x82A"},
	{"4-byte lead then ASCII", "\xf0\x9f\x98A"},
	{"ends after a 2-byte lead", "ab\xc2"},
	{"ends inside a 3-byte character", "ab\xe2\x82"},
	{"ends inside a 4-byte character", "ab\xf0\x9f\x98"},
	{"kosme, surrogate, edited", "κόσμε\xed\xa0\x80edited"},
	{"invalid after a long ASCII run", "0123456789abcdef0123456789abcdef\xff"},
}

// htPerByteFragments splits text message p into masked frames of one byte each.
func htPerByteFragments(p []byte) [][]byte {
	frames := make([][]byte, len(p))
	for i := range p {
		op := codec.OpText
		if i > 0 {
			op = codec.OpContinuation
		}
		frames[i] = htMasked(op, i == len(p)-1, p[i:i+1])
	}
	return frames
}

// 6.x: UTF-8 of text messages, whole and fragmented.
func htConfUTF8Cases() []htConfCase {
	var cases []htConfCase
	for _, v := range htConfValidUTF8 {
		p := []byte(v.s)
		perByte := htPerByteFragments(p)
		cases = append(cases,
			htConfCase{name: "valid " + v.name, writes: htOne(htMasked(codec.OpText, true, p)), want: [][]byte{htConfFrame(codec.OpText, p)}, open: true},
			htConfCase{name: "valid " + v.name + " one byte per fragment", writes: htOne(perByte...), want: [][]byte{htConfFrame(codec.OpText, p)}, open: true},
			htConfCase{name: "valid " + v.name + " one byte per write", writes: htBytewise(htMasked(codec.OpText, true, p)), want: [][]byte{htConfFrame(codec.OpText, p)}, open: true},
		)
	}
	for _, v := range htConfInvalidUTF8 {
		p := []byte(v.s)
		perByte := htPerByteFragments(p)
		cases = append(cases,
			htConfCase{name: "invalid " + v.name, writes: htOne(htMasked(codec.OpText, true, p)), want: [][]byte{htConfClose(1007)}},
			htConfCase{name: "invalid " + v.name + " one byte per fragment", writes: htOne(perByte...), want: [][]byte{htConfClose(1007)}},
		)
	}
	kosme := []byte("κόσμε")
	return append(cases,
		htConfCase{
			// Fail fast: the rest of the message is never sent; the server must not wait for it.
			name:   "invalid in the first fragment, rest never sent",
			writes: htOne(htMasked(codec.OpText, false, []byte("κόσμε\xed\xa0\x80"))),
			want:   [][]byte{htConfClose(1007)},
		},
		htConfCase{
			name:   "invalid in the second of three fragments, third never sent",
			writes: htEach(htMasked(codec.OpText, false, kosme), htMasked(codec.OpContinuation, false, []byte("\xf4\x90\x80\x80"))),
			want:   [][]byte{htConfClose(1007)},
		},
		htConfCase{
			name:   "last fragment ends mid-character",
			writes: htOne(htMasked(codec.OpText, false, kosme[:4]), htMasked(codec.OpContinuation, true, append(kosme[4:], 0xce))),
			want:   [][]byte{htConfClose(1007)},
		},
		htConfCase{
			name:   "empty last fragment after a fragment ending mid-character",
			writes: htOne(htMasked(codec.OpText, false, []byte("a\xe2\x82")), htMasked(codec.OpContinuation, true, nil)),
			want:   [][]byte{htConfClose(1007)},
		},
		htConfCase{
			name:   "character split across fragments is valid",
			writes: htEach(htMasked(codec.OpText, false, []byte("price \xe2\x82")), htMasked(codec.OpContinuation, true, []byte("\xac 5"))),
			want:   [][]byte{htConfFrame(codec.OpText, []byte("price € 5"))},
			open:   true,
		},
		htConfCase{
			name:   "binary messages are not checked",
			writes: htOne(htMasked(codec.OpBinary, true, []byte("\xff\xfe\xed\xa0\x80"))),
			want:   [][]byte{htConfFrame(codec.OpBinary, []byte("\xff\xfe\xed\xa0\x80"))},
			open:   true,
		},
		htConfCase{
			name:   "state resets between messages",
			writes: htOne(htMasked(codec.OpText, true, []byte("ok")), htMasked(codec.OpText, true, []byte("\xac"))),
			want:   [][]byte{htConfFrame(codec.OpText, []byte("ok")), htConfClose(1007)},
		},
	)
}

// 7.x: the closing handshake.
func htConfCloseCases() []htConfCase {
	hello := []byte("Hello")
	closeFrame := func(code codec.CloseCode, reason string) []byte {
		return htMasked(codec.OpClose, true, htClosePayload(code, reason))
	}
	cases := []htConfCase{
		{name: "close empty", writes: htOne(htMasked(codec.OpClose, true, nil)), want: [][]byte{htConfClose(0)}},
		{name: "close 1000 no reason", writes: htOne(closeFrame(1000, "")), want: [][]byte{htConfClose(1000)}},
		{name: "close 1000 with reason", writes: htOne(closeFrame(1000, "Hello wörld")), want: [][]byte{htConfClose(1000)}},
		{name: "close 1000 with a 123-byte reason", writes: htOne(closeFrame(1000, string(htConfText(123)))), want: [][]byte{htConfClose(1000)}},
		{name: "close with a 124-byte reason (126-byte payload)", writes: htOne(closeFrame(1000, string(htConfText(124)))), want: [][]byte{htConfClose(1002)}},
		{name: "close with a 1-byte payload", writes: htOne(htMasked(codec.OpClose, true, []byte{0x03})), want: [][]byte{htConfClose(1002)}},
		{name: "close reason not UTF-8", writes: htOne(closeFrame(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited")), want: [][]byte{htConfClose(1007)}},
		{name: "close not final", writes: htOne(htMasked(codec.OpClose, false, htClosePayload(1000, ""))), want: [][]byte{htConfClose(1002)}},
		{
			name:   "text then close",
			writes: htOne(htMasked(codec.OpText, true, hello), closeFrame(1000, "")),
			want:   [][]byte{htConfFrame(codec.OpText, hello), htConfClose(1000)},
		},
		{
			name:   "close then text in the same write",
			writes: htOne(closeFrame(1000, ""), htMasked(codec.OpText, true, hello)),
			want:   [][]byte{htConfClose(1000)},
		},
		{
			name:   "close then ping in the same write",
			writes: htOne(closeFrame(1000, ""), htMasked(codec.OpPing, true, hello)),
			want:   [][]byte{htConfClose(1000)},
		},
		{
			name:   "close twice",
			writes: htOne(closeFrame(1000, ""), closeFrame(1001, "")),
			want:   [][]byte{htConfClose(1000)},
		},
		{
			name:   "close inside a fragmented message",
			writes: htOne(htMasked(codec.OpText, false, hello), closeFrame(1000, ""), htMasked(codec.OpContinuation, true, hello)),
			want:   [][]byte{htConfClose(1000)},
		},
		{
			name:   "close then garbage",
			writes: htOne(closeFrame(1000, ""), []byte{0xff, 0xff, 0xff, 0xff}),
			want:   [][]byte{htConfClose(1000)},
		},
	}
	for _, code := range []codec.CloseCode{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		cases = append(cases, htConfCase{
			name:   "valid code " + strconv.Itoa(int(code)),
			writes: htOne(closeFrame(code, "")),
			want:   [][]byte{htConfClose(code)},
		})
	}
	for _, code := range []codec.CloseCode{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		cases = append(cases, htConfCase{
			name:   "invalid code " + strconv.Itoa(int(code)),
			writes: htOne(closeFrame(code, "")),
			want:   [][]byte{htConfClose(1002)},
		})
	}
	return cases
}
