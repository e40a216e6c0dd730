package server_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// htLeakKind is one way a connection ends in TestLeakAll.
type htLeakKind int

const (
	htLeakClean    htLeakKind = iota // client close 1000, server echoes it and ends the connection
	htLeakReset                      // SO_LINGER 0 then close: the server sees a reset (1006)
	htLeakProtocol                   // an unmasked frame: close 1002, then linger until the client leaves
	htLeakRate                       // over ClientRate: close 4029, the client answers the close
	htLeakSlow                       // never reads: closed for the send-buffer limit (4000)
	htLeakZombie                     // silent after the upgrade: reaped at IdleTimeout (4001)
	htLeakKinds
)

var htLeakNames = [htLeakKinds]string{"clean", "reset", "protocol", "rate", "slow", "zombie"}

// Server settings for TestLeakAll, small so each way of ending happens fast.
const (
	htLeakClientRate  = 100 // ClientRate: burst 200
	htLeakSendLimit   = 16 << 10
	htLeakIdle        = 300 * time.Millisecond
	htLeakHeartbeat   = 100 * time.Millisecond
	htLeakHeapSlack   = 8 << 20 // HeapInuse may end at most this far above its baseline
	htLeakSlowBytes   = 3 << 20 // each slow consumer's unread echoes: more than loopback's socket buffers hold
	htLeakSlowBatch   = 25      // slow consumers in flight at once
	htLeakZombieBatch = 250     // zombies waiting out the idle timeout at once
)

// TestLeakAll opens 10,000 connections and ends them in every way the server knows (clean
// close, reset, protocol error, rate limit, slow consumer, zombie), partly in parallel, then
// checks that nothing is left: no active connection, every opened connection counted
// closed (each with the code its kind implies), goroutines back at the baseline and
// HeapInuse, after a GC, within htLeakHeapSlack (8 MiB) of the baseline. Slow consumers
// are the fewest: each must make the server echo more than the kernel's socket buffers
// take (about 2 MiB on loopback) before the send-buffer limit can trip.
func TestLeakAll(t *testing.T) {
	counts := [htLeakKinds]int{
		htLeakClean: 2500, htLeakReset: 2500, htLeakProtocol: 2000,
		htLeakRate: 1500, htLeakSlow: 500, htLeakZombie: 1000,
	}
	if testing.Short() {
		counts = [htLeakKinds]int{
			htLeakClean: 1000, htLeakReset: 1000, htLeakProtocol: 800,
			htLeakRate: 600, htLeakSlow: 100, htLeakZombie: 500,
		}
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	s := servertest.Start(t, server.Options{
		Loops:           2,
		ClientRate:      htLeakClientRate,
		SendBufferLimit: htLeakSendLimit,
		IdleTimeout:     htLeakIdle,
		Heartbeat:       htLeakHeartbeat,
	})
	for range 3 { // warm up gnet, the admin server and the pools before the baselines
		htHealthyEcho(t, s)
	}
	s.WaitMetric(t, "ws_connections_active", 0)
	before := s.Metrics(t)
	baseGoroutines := htStableGoroutines()
	baseHeap := htHeapInuse()

	start := time.Now()
	var failed atomic.Bool
	errs := make(chan error, 64)
	report := func(err error) {
		if err != nil && !failed.Swap(true) {
			errs <- err
		}
	}
	var wg sync.WaitGroup

	// Clean, reset, protocol and rate-limited connections, interleaved, from 8 workers.
	var quick []htLeakKind
	for k := range htLeakSlow {
		for range counts[k] {
			quick = append(quick, k)
		}
	}
	for i := range quick { // a fixed interleaving of the kinds
		j := (i * 7919) % len(quick)
		quick[i], quick[j] = quick[j], quick[i]
	}
	var next atomic.Int64
	for range 8 {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1)) - 1
				if i >= len(quick) {
					return
				}
				report(htLeakConn(s.Addr, quick[i]))
			}
		})
	}

	// Zombies wait out the idle timeout in large concurrent batches.
	wg.Go(func() {
		for done := 0; done < counts[htLeakZombie] && !failed.Load(); done += htLeakZombieBatch {
			var bw sync.WaitGroup
			for range min(htLeakZombieBatch, counts[htLeakZombie]-done) {
				bw.Go(func() { report(htLeakConn(s.Addr, htLeakZombie)) })
			}
			bw.Wait()
		}
	})

	// Slow consumers in batches: each client floods the server with echo requests without
	// reading, then waits until the server has given up on the whole batch (it must not
	// read before, or it would drain its socket and stop being slow), then drains and
	// closes.
	wg.Go(func() {
		for done := 0; done < counts[htLeakSlow] && !failed.Load(); done += htLeakSlowBatch {
			n := min(htLeakSlowBatch, counts[htLeakSlow]-done)
			base, err := htLeakScrape(s, "ws_slow_consumers_total")
			if err != nil {
				report(err)
				return
			}
			gaveUp := make(chan struct{})
			var bw sync.WaitGroup
			for range n {
				bw.Go(func() { report(htLeakSlowConn(s.Addr, gaveUp)) })
			}
			deadline := time.Now().Add(6 * htSlack)
			for {
				v, err := htLeakScrape(s, "ws_slow_consumers_total")
				if err != nil {
					report(err)
					break
				}
				if v >= base+float64(n) {
					break
				}
				if time.Now().After(deadline) || failed.Load() {
					report(fmt.Errorf("slow consumers: %v of a batch of %d closed by the server within %v", v-base, n, 6*htSlack))
					break
				}
				time.Sleep(20 * time.Millisecond) // polling interval
			}
			close(gaveUp)
			bw.Wait()
		}
	})

	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d connections (%v) ended in %v", total, counts, time.Since(start))

	s.WaitMetric(t, "ws_connections_active", 0)
	s.WaitMetric(t, "ws_send_buffer_bytes", 0)
	var after map[string]float64
	eventually(t, htSlack, func() bool {
		after = s.Metrics(t)
		return after["ws_connections_opened_total"] == after["ws_connections_closed_total"]
	}, func() string {
		return fmt.Sprintf("ws_connections_opened_total = %v, ws_connections_closed_total = %v",
			after["ws_connections_opened_total"], after["ws_connections_closed_total"])
	})
	delta := func(series string) int { return int(after[series] - before[series]) }
	if got := delta("ws_connections_opened_total"); got != total {
		t.Errorf("ws_connections_opened_total grew by %d, want %d", got, total)
	}
	// Clean, protocol and rate-limit closes are decided by what the client sent, so their
	// counts are exact. A reset or slow consumer that a loaded machine stalls for longer
	// than IdleTimeout is reaped as a zombie first, so those three share one sum.
	for _, c := range []struct {
		code codec.CloseCode
		want int
	}{{1000, counts[htLeakClean]}, {1002, counts[htLeakProtocol]}, {4029, counts[htLeakRate]}} {
		if got := delta(htCloseSeries(c.code)); got != c.want {
			t.Errorf("%s grew by %d, want %d", htCloseSeries(c.code), got, c.want)
		}
	}
	reset, slow, zombie := delta(htCloseSeries(1006)), delta(htCloseSeries(4000)), delta(htCloseSeries(4001))
	if want := counts[htLeakReset] + counts[htLeakSlow] + counts[htLeakZombie]; reset+slow+zombie != want {
		t.Errorf("closes 1006 + 4000 + 4001 = %d + %d + %d, want %d in all", reset, slow, zombie, want)
	}
	if zombie < counts[htLeakZombie] || slow == 0 || reset == 0 {
		t.Errorf("closes 1006, 4000, 4001 = %d, %d, %d; want about %d, %d, %d",
			reset, slow, zombie, counts[htLeakReset], counts[htLeakSlow], counts[htLeakZombie])
	}
	if got := delta("ws_slow_consumers_total"); got != slow {
		t.Errorf("ws_slow_consumers_total grew by %d, closes with 4000 by %d", got, slow)
	}
	if got := delta("ws_zombies_reaped_total"); got != zombie {
		t.Errorf("ws_zombies_reaped_total grew by %d, closes with 4001 by %d", got, zombie)
	}
	t.Logf("closes: 1000 %d, 1002 %d, 4029 %d, 1006 %d, 4000 %d, 4001 %d",
		delta(htCloseSeries(1000)), delta(htCloseSeries(1002)), delta(htCloseSeries(4029)), reset, slow, zombie)

	htWaitGoroutines(t, baseGoroutines)
	var heap uint64
	eventually(t, htSlack, func() bool {
		heap = htHeapInuse()
		return heap < baseHeap+htLeakHeapSlack
	}, func() string {
		return fmt.Sprintf("HeapInuse %d MiB after GC, baseline %d MiB (+%d MiB allowed)", heap>>20, baseHeap>>20, htLeakHeapSlack>>20)
	})
	t.Logf("HeapInuse after GC: baseline %.1f MiB, now %.1f MiB", float64(baseHeap)/(1<<20), float64(heap)/(1<<20))
	htHealthyEcho(t, s)
}

// htHeapInuse returns HeapInuse after a full collection.
func htHeapInuse() uint64 {
	runtime.GC()
	runtime.GC() // a second cycle empties sync.Pools (the victim cache survives one)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// htLeakScrape reads one series from /metrics without a testing.TB (for goroutines).
func htLeakScrape(s *servertest.Server, series string) (float64, error) {
	resp, err := htHTTP.Get(s.Admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := bytes.CutPrefix([]byte(line), []byte(series+" ")); ok {
			var v float64
			_, err := fmt.Sscan(string(rest), &v)
			return v, err
		}
	}
	return 0, fmt.Errorf("series %s missing from /metrics (%v)", series, sc.Err())
}

// Wire bytes the kinds send, built once.
var (
	htLeakRequest  = htRequest("GET / HTTP/1.1", htBaseHeaders...)
	htLeakClose    = htMasked(codec.OpClose, true, htClosePayload(1000, ""))
	htLeakText     = htMasked(codec.OpText, true, []byte("x"))
	htLeakUnmasked = codec.AppendFrame(nil, codec.OpText, true, []byte("unmasked"))
	htLeakFlood    = func() []byte { // three times the burst of tiny messages, in one write
		var b []byte
		for range 6 * htLeakClientRate {
			b = htAppendMasked(b, codec.OpBinary, true, []byte{1})
		}
		return b
	}()
)

// htLeakConn runs one connection of kind k (any kind but htLeakSlow) to its end. The
// frames ride in the same write as the request, so the server acts on them right after the
// upgrade, long before the idle timeout.
func htLeakConn(addr string, k htLeakKind) error {
	nc, err := net.DialTimeout("tcp", addr, htSlack)
	if err != nil {
		return fmt.Errorf("%s: dial: %w", htLeakNames[k], err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(2 * htSlack))
	wire := htLeakRequest
	switch k {
	case htLeakClean:
		wire = htCat(wire, htLeakClose)
	case htLeakReset:
		wire = htCat(wire, htLeakText)
	case htLeakProtocol:
		wire = htCat(wire, htLeakUnmasked)
	case htLeakRate:
		wire = htCat(wire, htLeakFlood)
	}
	if _, err := nc.Write(wire); err != nil {
		return fmt.Errorf("%s: write: %w", htLeakNames[k], err)
	}
	c := &htConn{nc: nc, br: bufio.NewReader(nc)}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return fmt.Errorf("%s: reading the upgrade response: %w", htLeakNames[k], err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("%s: upgrade status %d, want 101", htLeakNames[k], resp.StatusCode)
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s: "+format, append([]any{htLeakNames[k]}, args...)...)
	}

	switch k {
	case htLeakReset:
		f, err := c.readFrame(htSlack)
		if err != nil || f.op != codec.OpText {
			return fail("want the echo before resetting, got op %d, %v", f.op, err)
		}
		_ = nc.(*net.TCPConn).SetLinger(0)
		return nil
	case htLeakRate:
		res, err := htLeakUntilClose(c)
		if err != nil || res.code != codec.CloseRateLimited {
			return fail("close %d after %d echoes, %v; want 4029", res.code, res.data, err)
		}
		// Answer the close, so the server ends the connection now rather than at its
		// close timeout.
		if _, err := nc.Write(htLeakClose); err != nil {
			return fail("answering the close: %w", err)
		}
		return c.expectEOF(htSlack)
	}
	res, err := htLeakUntilClose(c)
	if err == nil {
		err = c.expectEOF(htSlack)
	}
	want := map[htLeakKind]codec.CloseCode{htLeakClean: 1000, htLeakProtocol: 1002, htLeakZombie: 4001}[k]
	if err != nil || res.code != want {
		return fail("close %d, %v; want %d then EOF", res.code, err, want)
	}
	return nil
}

// htLeakUntilClose reads frames (skipping pings and echoes) up to the server's close frame.
func htLeakUntilClose(c *htConn) (res htCloseResult, err error) {
	for {
		f, err := c.readFrame(htSlack)
		if err != nil {
			return res, err
		}
		switch f.op {
		case codec.OpClose:
			res.code, _ = htParseClose(f.payload)
			return res, nil
		case codec.OpPing, codec.OpPong:
		default:
			res.data++
		}
	}
}

// htLeakSlowWire is what a slow consumer sends: the upgrade request, then 64 KiB echo
// requests up to htLeakSlowBytes.
var htLeakSlowWire = func() []byte {
	msg := htMasked(codec.OpBinary, true, bytes.Repeat([]byte("s"), 64<<10))
	wire := append([]byte(nil), htLeakRequest...)
	for len(wire) < htLeakSlowBytes {
		wire = append(wire, msg...)
	}
	return wire
}()

// htLeakSlowConn is a slow consumer: a small receive buffer, a flood of echo requests in
// the same write as the upgrade request, and no reading until gaveUp is closed. Then it
// reads what is left (the 101, echoes, perhaps the best-effort close 4000) to the end of
// the connection.
func htLeakSlowConn(addr string, gaveUp <-chan struct{}) error {
	d := net.Dialer{Timeout: htSlack, Control: htSetRcvBuf(1024)}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("slow: dial: %w", err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(6 * htSlack))
	if _, err := nc.Write(htLeakSlowWire); err != nil && !htIsClosed(err) {
		return fmt.Errorf("slow: write: %w", err)
	}
	<-gaveUp
	c := &htConn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		if htIsClosed(err) {
			return nil // the server's reset may discard what was not read yet
		}
		return fmt.Errorf("slow: reading the upgrade response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("slow: upgrade status %d, want 101", resp.StatusCode)
	}
	for {
		f, err := c.readFrame(htSlack)
		if err != nil {
			if htIsClosed(err) {
				return nil
			}
			return fmt.Errorf("slow: reading after the server gave up: %w", err)
		}
		if f.op == codec.OpClose {
			if code, _ := htParseClose(f.payload); code != codec.CloseSlowConsumer {
				return fmt.Errorf("slow: close %d, want 4000", code)
			}
		}
	}
}

// htSetRcvBuf returns a net.Dialer Control that sets SO_RCVBUF before connecting, so the
// advertised window stays small.
func htSetRcvBuf(size int) func(_, _ string, rc syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
		}); err != nil {
			return err
		}
		return serr
	}
}
