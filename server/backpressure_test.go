package server_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// hdSlowDialer dials like a client on a slow link that has stopped reading: its receive
// buffer is 4 KiB and it announces a 536-byte MSS, both set before connect so the window
// and the MSS are negotiated small. The small MSS matters as much as the buffer: the
// server's kernel sizes its send buffer from the MSS, and on loopback (MSS 64 KiB) it
// would take about 2.8 MB for a peer that never reads before gnet queued a byte; with 536
// it takes about 100 KB, so the send-buffer limit is reached quickly.
func hdSlowDialer() *net.Dialer {
	return &net.Dialer{
		Timeout: 10 * time.Second,
		Control: func(_, _ string, rc syscall.RawConn) error {
			var err error
			if cerr := rc.Control(func(fd uintptr) {
				if err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096); err != nil {
					return
				}
				err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 536)
			}); cerr != nil {
				return cerr
			}
			return err
		},
	}
}

// hdFlood is one backpressure scenario's numbers.
type hdFlood struct {
	healthy, slow int
	messages, pad int   // messages published, bytes of padding in each
	limit         int64 // Options.SendBufferLimit
}

// hdFloodResult is what a flood measured.
type hdFloodResult struct {
	heapGrowth  uint64        // peak HeapInuse during the flood minus HeapInuse before it
	publishTook time.Duration // time to write every pub
	floodTook   time.Duration // time until every healthy client had every message
	healthz     []time.Duration
	healthzErrs []error
	readErrs    []error // one per healthy client that did not get every message in order
	slowConns   []*hdConn
}

// hdBackpressureFlood is TestBackpressureSlowConsumers' scenario: 1,000 subscribers, 10
// of them stalled, 300 messages of about 4 KiB (1.2 MB per subscriber: about seven times
// what a stalled socket takes before it is cut off, and 1.2 GB through the 990 healthy
// sockets, which a two-core machine under -race moves in seconds), and a 64 KiB limit.
var hdBackpressureFlood = hdFlood{healthy: 990, slow: 10, messages: 300, pad: 4000, limit: 64 << 10}

// hdHeapBound is how much the heap may grow during flood f while the send-buffer limit
// holds. The server may keep up to the limit queued for each stalled socket before it
// is cut off (gnet's buffer capacity may round that up); on top of that come the flood's
// own allocations: the publisher's window of frames in the loops' task queues, healthy
// sockets' short-lived queues, /healthz probes, and garbage, which GOGC=10 (set by
// hdRunFlood) keeps to a tenth of the live heap. 6 MiB covers those, measured at 2-4 MiB
// on a loaded two-core machine. Without the limit each stalled socket would keep nearly
// the whole flood: 10 x 1.2 MB = 12 MB more (TestBackpressureHeapMeasureControl).
func hdHeapBound(f hdFlood) uint64 { return uint64(f.slow)*uint64(f.limit) + 6<<20 }

// TestBackpressureSlowConsumers is DESIGN.md's invariant 6: 1,000 subscribers of one
// channel, 10 of which stop reading, while a publisher floods the channel. The 10 are
// closed as slow consumers (4000) once their queue passes -send-buffer-limit; the 990
// others get every message in order; the heap grows by about the queued bytes the limit
// allows, not by the flood; the admin listener keeps answering; and the queued-bytes
// gauge returns to 0.
func TestBackpressureSlowConsumers(t *testing.T) {
	if testing.Short() {
		t.Skip("floods 1,000 sockets")
	}
	f := hdBackpressureFlood
	hs := servertest.Start(t, server.Options{App: server.AppPubSub, SendBufferLimit: f.limit})
	res := hdRunFlood(t, hs, f)
	if t.Failed() {
		return
	}
	floodBytes := uint64(f.messages * (f.pad + 70)) // 70: the envelope and the seq field

	for _, err := range res.readErrs {
		t.Error(err)
	}
	if len(res.healthzErrs) > 0 {
		t.Errorf("%d of %d /healthz probes failed during the flood; first: %v", len(res.healthzErrs), len(res.healthz)+len(res.healthzErrs), res.healthzErrs[0])
	}
	if len(res.healthz) < 3 {
		t.Errorf("only %d /healthz probes answered during a %v flood", len(res.healthz), res.floodTook)
	}
	slowest := time.Duration(0)
	for _, d := range res.healthz {
		slowest = max(slowest, d)
	}
	// Generous: the machine may be shared; a blocked admin listener would time out (10 s).
	if slowest > 5*time.Second {
		t.Errorf("a /healthz probe took %v during the flood", slowest)
	}

	// Exactly the 10 stalled clients were cut off, each once.
	for _, series := range []string{hdCloseSeries(codec.CloseSlowConsumer), "ws_slow_consumers_total"} {
		if got := hs.Metric(t, series); got != float64(f.slow) {
			t.Errorf("%s = %v, want %d", series, got, f.slow)
		}
	}
	// Their TCP connections end. The close frame is best effort (it may be cut off with
	// the queue); what arrives first is what the kernel buffers held.
	for i, c := range res.slowConns {
		closeFrame, err := c.expectEnd(30 * time.Second)
		if err != nil {
			t.Errorf("slow client %d: want its connection ended, got %v", i, err)
		} else if closeFrame != nil && closeFrame.code != codec.CloseSlowConsumer {
			t.Errorf("slow client %d: close frame %d, want 4000", i, closeFrame.code)
		}
	}

	bound := hdHeapBound(f)
	t.Logf("heap grew %.1f MiB at peak (bound %.1f MiB; unlimited queues would add %.1f MiB); flood took %v; /healthz: %d probes, slowest %v",
		float64(res.heapGrowth)/(1<<20), float64(bound)/(1<<20), float64(uint64(f.slow)*floodBytes)/(1<<20), res.floodTook, len(res.healthz), slowest)
	if bound >= uint64(f.slow)*floodBytes*3/4 {
		t.Fatalf("test setup: the bound (%d) would not catch unlimited queues (%d)", bound, uint64(f.slow)*floodBytes)
	}
	if res.heapGrowth > bound {
		t.Errorf("heap grew by %d bytes during the flood, want at most %d", res.heapGrowth, bound)
	}

	var queued float64
	eventually(t, 15*time.Second, func() bool {
		queued = hs.Metric(t, "ws_send_buffer_bytes")
		return queued == 0
	}, func() string { return fmt.Sprintf("ws_send_buffer_bytes = %v after the flood, want 0", queued) })
}

// TestBackpressureHeapMeasureControl is the negative control of hdHeapBound: with a limit
// too high to trip, the 10 stalled subscribers of the same flood make the heap grow past
// that bound, so the bound does tell a bounded server from an unbounded one. Two healthy
// subscribers stand in for the 990: their queues are not what is measured.
func TestBackpressureHeapMeasureControl(t *testing.T) {
	if testing.Short() {
		t.Skip("floods sockets")
	}
	f := hdBackpressureFlood
	f.healthy, f.limit = 2, 1<<30
	hs := servertest.Start(t, server.Options{App: server.AppPubSub, SendBufferLimit: f.limit})
	res := hdRunFlood(t, hs, f)
	if t.Failed() {
		return
	}
	for _, err := range res.readErrs {
		t.Error(err)
	}
	bound := hdHeapBound(hdBackpressureFlood)
	t.Logf("heap grew %.1f MiB at peak with unlimited queues (bound %.1f MiB)", float64(res.heapGrowth)/(1<<20), float64(bound)/(1<<20))
	if res.heapGrowth <= bound {
		t.Errorf("heap grew by %d bytes with 10 stalled sockets and no effective limit, want over %d: the measurement cannot see an unbounded queue", res.heapGrowth, bound)
	}
	if got := hs.Metric(t, "ws_slow_consumers_total"); got != 0 {
		t.Errorf("ws_slow_consumers_total = %v with a 1 GiB limit, want 0", got)
	}
	if got := hs.Metric(t, "ws_send_buffer_bytes"); got < float64(f.slow*f.messages*f.pad)/2 {
		t.Errorf("ws_send_buffer_bytes = %v with 10 stalled sockets, want most of the flood queued", got)
	}
}

// hdRunFlood connects f.healthy reading and f.slow stalled subscribers of one channel,
// publishes f.messages numbered messages from one publisher socket (so their order is
// defined), and measures the heap and /healthz meanwhile. It returns once
// every healthy client has its last message or failed, and the slow consumers expected
// by f.limit were counted.
func hdRunFlood(t *testing.T, hs *servertest.Server, f hdFlood) hdFloodResult {
	t.Helper()
	const channel = "flood"
	var res hdFloodResult

	// Connect: the stalled clients with small buffers, everyone subscribed before the flood.
	conns := hdConnectEach(t, hs, f.healthy+f.slow, func(i int) *net.Dialer {
		if i >= f.healthy {
			return hdSlowDialer()
		}
		return &net.Dialer{Timeout: 10 * time.Second}
	}, func(c *hdConn) error { return c.subscribe(channel) })
	res.slowConns = conns[f.healthy:]

	// Healthy clients read every message and check the sequence numbers; they keep O(1)
	// state so the test's own heap does not grow with the flood.
	readErrs := make(chan error, f.healthy)
	var readers sync.WaitGroup
	for i, c := range conns[:f.healthy] {
		// The payload scratch is sized before the heap baseline is taken.
		c.buf = make([]byte, 0, f.pad+1024)
		readers.Go(func() {
			if err := hdReadSequence(c, f.messages, 120*time.Second); err != nil {
				readErrs <- fmt.Errorf("healthy client %d: %w", i, err)
			}
		})
	}

	// A low GOGC keeps garbage from piling up in the peak, so the growth measured is
	// close to what is really held.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	peak.Store(base)
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	// The admin listener must stay responsive while the loops are busy.
	floodDone := make(chan struct{})
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		for {
			select {
			case <-floodDone:
				return
			case <-time.After(20 * time.Millisecond):
			}
			start := time.Now()
			resp, err := httpClient.Get(hs.Admin + "/healthz")
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %s", resp.Status)
				}
			}
			if err != nil {
				res.healthzErrs = append(res.healthzErrs, err)
			} else {
				res.healthz = append(res.healthz, time.Since(start))
			}
		}
	}()

	// One publisher socket sends every message as a pub op: its loop hands them to the
	// broker in the order they arrive, so the order is the publish order. The publisher
	// also subscribes and keeps at most a window of its own messages unconfirmed, like a
	// real backend that does not outrun the fan-out, so the flood does not pile up in
	// the loops' task queues (which would blur the heap measurement).
	const window = 32
	pub := hdMustUpgrade(t, hs.Addr, "/")
	if m, err := pub.readMsg(15 * time.Second); err != nil || m.Type != "welcome" {
		t.Fatalf("publisher: first message = %+v, %v; want welcome", m, err)
	}
	if err := pub.subscribe(channel); err != nil {
		t.Fatalf("publisher: %v", err)
	}
	pad := strings.Repeat("x", f.pad)
	start := time.Now()
	var batch []byte
	for sent, confirmed := 0, 0; confirmed < f.messages; {
		for ; sent < f.messages && sent-confirmed < window; sent++ {
			op := `{"op":"pub","channel":"` + channel + `","data":{"seq":` + strconv.Itoa(sent) + `,"pad":"` + pad + `"}}`
			batch = append(batch, hdClientFrame(codec.OpText, []byte(op))...)
		}
		if len(batch) > 0 {
			_ = pub.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := pub.Write(batch); err != nil {
				t.Fatalf("publishing up to %d: %v", sent, err)
			}
			batch = batch[:0]
		}
		for ; confirmed < f.messages && sent-confirmed > window/2 || confirmed < sent && sent == f.messages; confirmed++ {
			if err := hdReadSequenceFrom(pub, confirmed, confirmed+1, 60*time.Second); err != nil {
				t.Fatalf("publisher: %v", err)
			}
		}
	}
	res.publishTook = time.Since(start)

	readers.Wait()
	res.floodTook = time.Since(start)
	close(readErrs)
	for err := range readErrs {
		res.readErrs = append(res.readErrs, err)
	}
	if f.limit < int64(f.messages*f.pad) {
		hs.WaitMetricFunc(t, "ws_slow_consumers_total", func(v float64) bool { return v >= float64(f.slow) })
	}
	close(floodDone)
	<-probed
	close(stopSampling)
	<-sampled
	if p := peak.Load(); p > base {
		res.heapGrowth = p - base
	}
	return res
}

// hdReadSequence reads channel messages until it has seq n-1, failing on a gap, a
// reordering or anything but a message.
func hdReadSequence(c *hdConn, n int, within time.Duration) error {
	return hdReadSequenceFrom(c, 0, n, within)
}

// hdReadSequenceFrom is hdReadSequence for the messages from seq first to n-1.
func hdReadSequenceFrom(c *hdConn, first, n int, within time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(within))
	defer c.SetReadDeadline(time.Time{})
	key := []byte(`"seq":`)
	for want := first; want < n; {
		fr, err := c.readFrame()
		if err != nil {
			return fmt.Errorf("after seq %d of %d: %w", want-1, n, err)
		}
		switch fr.op {
		case codec.OpPing: // a healthy client answers heartbeats
			if err := c.send(codec.OpPong, fr.payload); err != nil {
				return err
			}
			continue
		case codec.OpPong:
			continue
		case codec.OpClose:
			return fmt.Errorf("after seq %d of %d: %w", want-1, n, hdParseClose(fr.payload))
		case codec.OpText:
		default:
			return fmt.Errorf("unexpected opcode %v", fr.op)
		}
		i := bytes.Index(fr.payload, key)
		if i < 0 || !bytes.HasPrefix(fr.payload, []byte(`{"type":"message","channel":"flood"`)) {
			return fmt.Errorf("unexpected message %.80q", fr.payload)
		}
		rest := fr.payload[i+len(key):]
		j := bytes.IndexByte(rest, ',')
		if j < 0 {
			return fmt.Errorf("no seq in %.80q", fr.payload)
		}
		got := 0 // parsed by hand: strconv would allocate a string per message
		for _, d := range rest[:j] {
			if d < '0' || d > '9' {
				got = -1
				break
			}
			got = got*10 + int(d-'0')
		}
		if j == 0 || got != want {
			return fmt.Errorf("got seq %q, want %d", rest[:j], want)
		}
		want++
	}
	return nil
}
