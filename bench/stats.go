package bench

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms record microseconds from 1 µs to 10 minutes with 3 significant figures.
const (
	histMin     = 1
	histMax     = int64(10 * time.Minute / time.Microsecond)
	histSigFigs = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histSigFigs) }

// curveBucket is the resolution of the reconnect curve.
const curveBucket = 100 * time.Millisecond

// stats is one worker's measurements. Counters are atomics written from gnet loops; the
// histograms are guarded by mu.
type stats struct {
	attempted, opened, failed     atomic.Int64 // dials (first connects and reconnects)
	closedByServer, pings         atomic.Int64 // sockets the server closed; pings answered
	sent, received                atomic.Int64 // echo messages, or broadcast deliveries
	subscribed, reconnected       atomic.Int64 // subscribed confirmations; successful reconnects
	churned, disconnected, errors atomic.Int64
	live, firstFailed             atomic.Int64 // sockets open now; first connects that failed

	mu        sync.Mutex
	causes    map[string]int64
	connect   *hdrhistogram.Histogram // dial start to 101
	latency   *hdrhistogram.Histogram // echo RTT or broadcast delivery latency
	reconnect *hdrhistogram.Histogram // disconnect to reconnected
	lastSeen  map[int]int64           // broadcast seq -> latest arrival, unix ns
	seqSent   map[int]int64           // broadcast seq -> publish time carried in the payload
	curve     map[int]int64           // reconnects per curveBucket since the first disconnect
	firstDrop atomic.Int64            // unix ns of the first server-side disconnect
}

func newStats() *stats {
	return &stats{
		causes: map[string]int64{}, connect: newHist(), latency: newHist(), reconnect: newHist(),
		lastSeen: map[int]int64{}, seqSent: map[int]int64{}, curve: map[int]int64{},
	}
}

func (s *stats) fail(cause string) {
	s.failed.Add(1)
	s.mu.Lock()
	s.causes[cause]++
	s.mu.Unlock()
}

func record(h *hdrhistogram.Histogram, d time.Duration) {
	us := max(int64(d/time.Microsecond), histMin)
	_ = h.RecordValue(min(us, histMax))
}

// partReport is what a worker hands its coordinator at the end (JSON across processes).
type partReport struct {
	Attempted, Opened, Failed, ClosedByServer, Pings int64
	Sent, Received, Subscribed, Reconnected          int64
	Churned, Disconnected, Errors, Open, FirstFailed int64
	Causes                                           map[string]int64
	Connect, Latency, Reconnect                      *hdrhistogram.Snapshot
	LastSeen, SeqSent                                map[int]int64
	Curve                                            map[int]int64
	FirstDrop                                        int64
}

func (s *stats) report(open int64) *partReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &partReport{
		Attempted: s.attempted.Load(), Opened: s.opened.Load(), Failed: s.failed.Load(),
		ClosedByServer: s.closedByServer.Load(), Pings: s.pings.Load(), Sent: s.sent.Load(),
		Received: s.received.Load(), Subscribed: s.subscribed.Load(), Reconnected: s.reconnected.Load(),
		Churned: s.churned.Load(), Disconnected: s.disconnected.Load(), Errors: s.errors.Load(), Open: open, FirstFailed: s.firstFailed.Load(),
		Causes: map[string]int64{}, Connect: s.connect.Export(), Latency: s.latency.Export(),
		Reconnect: s.reconnect.Export(), LastSeen: map[int]int64{}, Curve: map[int]int64{},
		FirstDrop: s.firstDrop.Load(),
	}
	for k, v := range s.causes {
		r.Causes[k] = v
	}
	for k, v := range s.lastSeen {
		r.LastSeen[k] = v
	}
	r.SeqSent = map[int]int64{}
	for k, v := range s.seqSent {
		r.SeqSent[k] = v
	}
	for k, v := range s.curve {
		r.Curve[k] = v
	}
	return r
}

// merged is the sum of every worker's partReport.
type merged struct {
	partReport
	connect, latency, reconnect *hdrhistogram.Histogram
}

func merge(parts []*partReport) *merged {
	m := &merged{connect: newHist(), latency: newHist(), reconnect: newHist()}
	m.Causes, m.LastSeen, m.SeqSent, m.Curve = map[string]int64{}, map[int]int64{}, map[int]int64{}, map[int]int64{}
	for _, p := range parts {
		m.Attempted += p.Attempted
		m.Opened += p.Opened
		m.Failed += p.Failed
		m.ClosedByServer += p.ClosedByServer
		m.Pings += p.Pings
		m.Sent += p.Sent
		m.Received += p.Received
		m.Subscribed += p.Subscribed
		m.Reconnected += p.Reconnected
		m.Churned += p.Churned
		m.Disconnected += p.Disconnected
		m.Errors += p.Errors
		m.Open += p.Open
		m.FirstFailed += p.FirstFailed
		for k, v := range p.Causes {
			m.Causes[k] += v
		}
		for k, v := range p.LastSeen {
			m.LastSeen[k] = max(m.LastSeen[k], v)
		}
		for k, v := range p.SeqSent {
			m.SeqSent[k] = v
		}
		if p.FirstDrop != 0 && (m.FirstDrop == 0 || p.FirstDrop < m.FirstDrop) {
			m.FirstDrop = p.FirstDrop
		}
		m.connect.Merge(hdrhistogram.Import(p.Connect))
		m.latency.Merge(hdrhistogram.Import(p.Latency))
		m.reconnect.Merge(hdrhistogram.Import(p.Reconnect))
	}
	// Curves are relative to each worker's first drop; re-base them on the earliest.
	for _, p := range parts {
		shift := 0
		if p.FirstDrop != 0 && m.FirstDrop != 0 {
			shift = int(time.Duration(p.FirstDrop-m.FirstDrop) / curveBucket)
		}
		for k, v := range p.Curve {
			m.Curve[k+shift] += v
		}
	}
	return m
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}
