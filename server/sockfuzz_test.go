package server_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// htFuzzSeed fixes the fuzzer's choices; the interleaving of workers still varies.
const htFuzzSeed = 0x5eed6455

// htFuzzMaxMessage is the fuzzed server's MaxMessageBytes: small enough that generated
// streams cross it, large enough for 126- and 127-length encodings.
const htFuzzMaxMessage = 64 << 10

// TestSockFuzz throws random and mutated frame streams at a server over real sockets for a
// bounded time (WSR_SOCKFUZZ_SECONDS, default 5 s, 2 s with -short), from 8 workers, each
// opening connection after connection. A stream starts as valid masked frames of random
// types and sizes; most are then damaged (bits flipped, cut short, spans duplicated, deleted
// or inserted, frames of forbidden kinds mixed in) and every stream is split at random
// points into several writes. Undamaged streams must be echoed exactly (pongs and echoes in
// order, then the close handshake); every frame the server sends, damaged or not, must be a
// valid server frame. Afterwards the server must still be running and healthy, with no
// connection, goroutine or queued byte left behind.
func TestSockFuzz(t *testing.T) {
	dur := 5 * time.Second
	if testing.Short() {
		dur = 2 * time.Second
	}
	if v := os.Getenv("WSR_SOCKFUZZ_SECONDS"); v != "" {
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || secs <= 0 {
			t.Fatalf("WSR_SOCKFUZZ_SECONDS=%q: want a positive number of seconds", v)
		}
		dur = time.Duration(secs * float64(time.Second))
	}
	const workers = 8
	s := servertest.Start(t, server.Options{
		Loops:            2,
		MaxMessageBytes:  htFuzzMaxMessage,
		Heartbeat:        250 * time.Millisecond, // server pings cross the fuzzed streams
		IdleTimeout:      5 * time.Second,        // never reaps a live fuzz client on a slow machine
		HandshakeTimeout: time.Second,
		// Undamaged streams must echo exactly; a slow reader on a loaded machine must not
		// be taken for a slow consumer.
		SendBufferLimit: 8 << 20,
	})
	for range 2 { // warm up the admin server and gnet before the baseline
		htHealthyEcho(t, s)
	}
	s.WaitMetric(t, "ws_connections_active", 0)
	baseline := htStableGoroutines()

	var st htFuzzStats
	stop := time.Now().Add(dur)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(htFuzzSeed, uint64(w)))
			for i := 0; time.Now().Before(stop); i++ {
				if err := htFuzzConn(s.Addr, rng, &st); err != nil {
					errs <- fmt.Errorf("worker %d, connection %d: %w", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d connections in %v: %d undamaged streams echoed exactly, %d damaged, %d bad handshakes; server frames seen: %d",
		st.conns.Load(), dur, st.exact.Load(), st.damaged.Load(), st.badHandshakes.Load(), st.serverFrames.Load())
	if t.Failed() {
		t.FailNow()
	}

	htRunning(t, s)
	if status, body := htGet(t, s, "/healthz"); status != http.StatusOK {
		t.Fatalf("/healthz = %d %q, want 200", status, body)
	}
	htHealthyEcho(t, s)
	s.WaitMetric(t, "ws_connections_active", 0)
	s.WaitMetric(t, "ws_send_buffer_bytes", 0)
	m := s.Metrics(t)
	if opened, closed := m["ws_connections_opened_total"], m["ws_connections_closed_total"]; opened != closed {
		t.Errorf("ws_connections_opened_total = %v, ws_connections_closed_total = %v; want equal", opened, closed)
	}
	htWaitGoroutines(t, baseline)
}

// htFuzzStats counts what the fuzzer did, for the log.
type htFuzzStats struct {
	conns, exact, damaged, badHandshakes, serverFrames atomic.Int64
}

// htFuzzStream is a generated client stream and, while it is undamaged, exactly what the
// server must answer (server pings aside), not counting the close handshake.
type htFuzzStream struct {
	wire []byte
	want []htFrame // op and payload of each expected pong and echo, in order
}

// htFuzzConn runs one fuzzed connection.
func htFuzzConn(addr string, rng *rand.Rand, st *htFuzzStats) error {
	st.conns.Add(1)
	nc, err := net.DialTimeout("tcp", addr, htSlack)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer nc.Close()
	request := htRequest("GET / HTTP/1.1", htBaseHeaders...)

	if rng.IntN(20) == 0 {
		// A damaged handshake: whatever the server makes of it, it must not break.
		st.badHandshakes.Add(1)
		htMutate(rng, &request, 1+rng.IntN(3))
		for _, chunk := range htSplit(rng, request) {
			_ = nc.SetWriteDeadline(time.Now().Add(htSlack))
			if _, err := nc.Write(chunk); err != nil {
				return nil // the server refused it early; fine
			}
		}
		_ = nc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, _ = bytes.NewBuffer(nil).ReadFrom(nc)
		return nil
	}

	stream := htGenStream(rng)
	damaged := rng.IntN(10) < 6
	if damaged {
		st.damaged.Add(1)
		htDamage(rng, &stream.wire)
	}
	// Sometimes the first frames ride in the same write as the request.
	pipelined := 0
	if rng.IntN(4) == 0 {
		pipelined = rng.IntN(len(stream.wire) + 1)
	}
	if _, err := nc.Write(append(bytes.Clone(request), stream.wire[:pipelined]...)); err != nil {
		return fmt.Errorf("writing the request: %w", err)
	}
	c := &htConn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}
	_ = nc.SetReadDeadline(time.Now().Add(htSlack))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		if damaged && pipelined > 0 && htIsClosed(err) {
			return nil
		}
		return fmt.Errorf("reading the upgrade response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("upgrade status %d, want 101", resp.StatusCode)
	}

	// The reader checks every server frame and keeps those that are not pings.
	type readResult struct {
		frames []htFrame
		err    error // nil: the connection ended after a close frame or EOF
	}
	done := make(chan readResult, 1)
	go func() {
		var res readResult
		sawClose := false
		for {
			_ = nc.SetReadDeadline(time.Now().Add(2 * htSlack))
			f, err := htReadFrame(c.br, 1<<20)
			if err != nil {
				if !htIsClosed(err) && !errors.Is(err, net.ErrClosed) {
					res.err = err
				}
				done <- res
				return
			}
			st.serverFrames.Add(1)
			if sawClose {
				res.err = fmt.Errorf("server frame (op %d) after its close frame", f.op)
				done <- res
				return
			}
			sawClose = f.op == codec.OpClose
			if err := htCheckServerFrame(f); err != nil {
				res.err = err
				done <- res
				return
			}
			if f.op != codec.OpPing {
				f.raw = nil
				res.frames = append(res.frames, f)
			}
		}
	}()

	for _, chunk := range htSplit(rng, stream.wire[pipelined:]) {
		_ = nc.SetWriteDeadline(time.Now().Add(htSlack))
		if _, err := nc.Write(chunk); err != nil {
			if damaged && (htIsClosed(err) || errors.Is(err, net.ErrClosed)) {
				break // the server failed the connection already
			}
			return fmt.Errorf("write: %w", err)
		}
	}

	if !damaged {
		// Close cleanly; the server must have answered everything, then echo 1000 and end.
		_ = nc.SetWriteDeadline(time.Now().Add(htSlack))
		if _, err := nc.Write(htMasked(codec.OpClose, true, htClosePayload(1000, ""))); err != nil {
			return fmt.Errorf("writing the close: %w", err)
		}
		res := <-done
		if res.err != nil {
			return fmt.Errorf("undamaged stream: %w", res.err)
		}
		want := append(stream.want, htFrame{op: codec.OpClose, payload: htClosePayload(1000, "")})
		if err := htSameFrames(res.frames, want); err != nil {
			return fmt.Errorf("undamaged stream of %d bytes: %w", len(stream.wire), err)
		}
		st.exact.Add(1)
		return nil
	}

	switch rng.IntN(3) {
	case 0: // wait a little for the server's verdict, then leave
		select {
		case res := <-done:
			return res.err
		case <-time.After(300 * time.Millisecond): // how long this client waits, not a condition
		}
	case 1: // leave with a reset
		_ = nc.(*net.TCPConn).SetLinger(0)
	}
	_ = nc.Close()
	if res := <-done; res.err != nil {
		return fmt.Errorf("damaged stream: %w", res.err)
	}
	return nil
}

// htSameFrames compares the server's frames with the expected ones (op and payload).
func htSameFrames(got, want []htFrame) error {
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			return fmt.Errorf("server sent %d frames, want %d; missing frame %d: op %d, %d bytes", len(got), len(want), i, want[i].op, len(want[i].payload))
		case i >= len(want):
			return fmt.Errorf("server sent %d frames, want %d; extra frame %d: op %d, %q", len(got), len(want), i, got[i].op, htTrim(got[i].payload))
		case got[i].op != want[i].op || !got[i].fin || !bytes.Equal(got[i].payload, want[i].payload):
			return fmt.Errorf("frame %d: op %d fin %v %d bytes %q, want op %d %d bytes %q", i,
				got[i].op, got[i].fin, len(got[i].payload), htTrim(got[i].payload), want[i].op, len(want[i].payload), htTrim(want[i].payload))
		}
	}
	return nil
}

func htTrim(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// htRunes are the characters random texts are made of: 1- to 4-byte encodings.
var htRunes = []rune("aZ09 ~é߿ࠀ€κό日本\uFFFD\U00010000😀\U0010FFFF")

// htGenStream returns a valid stream: 1-6 messages of random type and size, each in 1-4
// fragments, with pings (answered) and pongs (ignored) between frames.
func htGenStream(rng *rand.Rand) htFuzzStream {
	var s htFuzzStream
	control := func() {
		switch rng.IntN(8) {
		case 0, 1:
			p := htRandBytes(rng, rng.IntN(126))
			s.wire = htAppendMasked(s.wire, codec.OpPing, true, p)
			s.want = append(s.want, htFrame{op: codec.OpPong, payload: p})
		case 2:
			s.wire = htAppendMasked(s.wire, codec.OpPong, true, htRandBytes(rng, rng.IntN(126)))
		}
	}
	for range 1 + rng.IntN(6) {
		var size int
		switch r := rng.IntN(50); {
		case r == 0:
			size = rng.IntN(htFuzzMaxMessage + 1)
		case r < 5:
			size = rng.IntN(8 << 10)
		default:
			size = rng.IntN(300)
		}
		op, payload := codec.OpBinary, htRandBytes(rng, size)
		if rng.IntN(2) == 0 {
			op, payload = codec.OpText, htRandText(rng, size)
		}
		n := 1 + rng.IntN(4)
		cuts := []int{0}
		for range n - 1 {
			cuts = append(cuts, rng.IntN(len(payload)+1))
		}
		cuts = append(cuts, len(payload))
		slices.Sort(cuts)
		for i := range n {
			fop := op
			if i > 0 {
				fop = codec.OpContinuation
			}
			control()
			s.wire = htAppendMasked(s.wire, fop, i == n-1, payload[cuts[i]:cuts[i+1]])
		}
		s.want = append(s.want, htFrame{op: op, payload: payload})
	}
	control()
	return s
}

// htDamage makes a stream invalid or at least suspicious: frames of forbidden kinds, then
// byte-level mutations.
func htDamage(rng *rand.Rand, wire *[]byte) {
	for range rng.IntN(3) {
		var f []byte
		switch rng.IntN(9) {
		case 0:
			f = codec.AppendFrame(nil, codec.OpText, true, htRandText(rng, rng.IntN(50))) // unmasked
		case 1:
			f = htRSV(htMasked(codec.OpBinary, true, htRandBytes(rng, rng.IntN(50))), byte(1+rng.IntN(7))<<4)
		case 2:
			f = htMasked(codec.OpCode([]byte{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF}[rng.IntN(10)]), rng.IntN(2) == 0, htRandBytes(rng, rng.IntN(50)))
		case 3:
			f = htMasked(codec.OpPing, true, htRandBytes(rng, 126+rng.IntN(200))) // control too long
		case 4:
			f = htMasked(codec.OpClose, true, htRandBytes(rng, rng.IntN(126))) // random close payload
		case 5:
			f = htMasked(codec.OpClose, true, htClosePayload(codec.CloseCode(rng.IntN(6000)), string(htRandText(rng, rng.IntN(20)))))
		case 6:
			f = htMasked(codec.OpText, true, htRandBytes(rng, rng.IntN(50))) // likely invalid UTF-8
		case 7:
			f = htMasked(codec.OpContinuation, rng.IntN(2) == 0, htRandBytes(rng, rng.IntN(50)))
		case 8:
			f = htMasked(codec.OpBinary, true, make([]byte, htFuzzMaxMessage+1+rng.IntN(100))) // over the limit
		}
		at := rng.IntN(len(*wire) + 1)
		*wire = append((*wire)[:at:at], append(f, (*wire)[at:]...)...)
	}
	htMutate(rng, wire, rng.IntN(5))
}

// htMutate applies n byte-level mutations to b.
func htMutate(rng *rand.Rand, b *[]byte, n int) {
	for range n {
		w := *b
		if len(w) == 0 {
			*b = htRandBytes(rng, 1+rng.IntN(16))
			continue
		}
		i := rng.IntN(len(w))
		switch rng.IntN(6) {
		case 0, 1: // flip bits, most often in a header byte near the front
			if rng.IntN(2) == 0 {
				i = rng.IntN(min(len(w), 16))
			}
			w[i] ^= byte(1 << rng.IntN(8))
		case 2: // cut short
			*b = w[:i]
		case 3: // duplicate a span
			j := min(len(w), i+1+rng.IntN(64))
			*b = append(w[:j:j], w[i:]...)
		case 4: // delete a span
			j := min(len(w), i+1+rng.IntN(16))
			*b = append(w[:i:i], w[j:]...)
		case 5: // insert random bytes
			*b = append(w[:i:i], append(htRandBytes(rng, 1+rng.IntN(16)), w[i:]...)...)
		}
	}
}

// htSplit cuts b into 1-8 writes at random points.
func htSplit(rng *rand.Rand, b []byte) [][]byte {
	n := 1 + rng.IntN(8)
	cuts := []int{0}
	for range n - 1 {
		cuts = append(cuts, rng.IntN(len(b)+1))
	}
	cuts = append(cuts, len(b))
	slices.Sort(cuts)
	var out [][]byte
	for i := range n {
		if cuts[i] < cuts[i+1] {
			out = append(out, b[cuts[i]:cuts[i+1]])
		}
	}
	return out
}

func htRandBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	return b
}

// htRandText returns about n bytes (at most n) of valid UTF-8.
func htRandText(rng *rand.Rand, n int) []byte {
	b := make([]byte, 0, n)
	for {
		r := string(htRunes[rng.IntN(len(htRunes))])
		if len(b)+len(r) > n {
			break
		}
		b = append(b, r...)
	}
	for len(b) < n {
		b = append(b, 'x')
	}
	return b
}

// htStableGoroutines returns the goroutine count once it holds still for a moment.
func htStableGoroutines() int {
	n := runtime.NumGoroutine()
	for range 50 {
		time.Sleep(20 * time.Millisecond) // sampling interval
		m := runtime.NumGoroutine()
		if m == n {
			return n
		}
		n = m
	}
	return n
}

// htWaitGoroutines polls until the goroutine count is back within 5 of baseline.
func htWaitGoroutines(t testing.TB, baseline int) {
	t.Helper()
	const delta = 5
	var now int
	eventually(t, htSlack, func() bool {
		now = runtime.NumGoroutine()
		return now <= baseline+delta
	}, func() string {
		buf := make([]byte, 1<<20)
		return fmt.Sprintf("%d goroutines, baseline %d (+%d allowed)\n%s", now, baseline, delta, buf[:runtime.Stack(buf, true)])
	})
}
