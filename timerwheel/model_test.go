package timerwheel

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// refWheel is the naive reference the wheel is checked against: a flat array of timers,
// each with its rounded tick and a schedule sequence number, scanned in full to find the
// next one to fire. It states the documented semantics directly: round the deadline up
// to a tick; a deadline at or before now is due at once; never fire a tick already passed
// (a late deadline takes the tick being processed); fire by (tick, sequence).
type refWheel struct {
	tick      int64
	start     time.Time
	now       time.Time
	cur       int64 // tick being processed, or last processed
	target    int64 // tick of now
	advancing bool
	seq       uint64
	timers    []refTimer
}

type refTimer struct {
	armed bool
	tick  int64
	seq   uint64
	when  time.Time
}

func newRefWheel(tick time.Duration, start time.Time, n int) *refWheel {
	return &refWheel{tick: int64(tick), start: start, now: start, timers: make([]refTimer, n)}
}

func (m *refWheel) schedule(id int, at time.Time) {
	e := int64(0)
	if d := int64(at.Sub(m.start)); d > 0 {
		e = d / m.tick
		if e*m.tick < d {
			e++
		}
	}
	if e > m.target && !at.After(m.now) {
		e = m.cur // due now although the rounding says after now
	}
	e = max(e, m.cur)
	m.seq++
	m.timers[id] = refTimer{armed: true, tick: e, seq: m.seq, when: at}
}

func (m *refWheel) stop(id int) bool {
	was := m.timers[id].armed
	m.timers[id].armed = false
	return was
}

func (m *refWheel) advance(now time.Time, fire func(int)) {
	if m.advancing || now.Before(m.now) {
		return
	}
	m.advancing = true
	defer func() { m.advancing = false }()
	m.now = now
	m.target = int64(now.Sub(m.start)) / m.tick
	for {
		best := -1
		for i, t := range m.timers {
			if !t.armed || t.tick > m.target {
				continue
			}
			if best < 0 || t.tick < m.timers[best].tick || t.tick == m.timers[best].tick && t.seq < m.timers[best].seq {
				best = i
			}
		}
		if best < 0 {
			break
		}
		m.cur = m.timers[best].tick
		m.timers[best].armed = false
		fire(best)
	}
	m.cur = m.target
}

func (m *refWheel) len() int {
	n := 0
	for _, t := range m.timers {
		if t.armed {
			n++
		}
	}
	return n
}

// source yields the numbers that drive a harness: a seeded PRNG in the model test, the
// fuzzer's bytes in FuzzWheel.
type source interface {
	// next returns the next number and false once the source is exhausted.
	next() (uint64, bool)
}

// rngSource draws left numbers from r.
type rngSource struct {
	r    *rand.Rand
	left int
}

func (s *rngSource) next() (uint64, bool) {
	if s.left <= 0 {
		return 0, false
	}
	s.left--
	return s.r.Uint64(), true
}

// byteSource reads numbers of 1, 2 or 4 bytes, chosen by a selector byte, so that short
// fuzz inputs still describe many operations.
type byteSource struct{ b []byte }

func (s *byteSource) next() (uint64, bool) {
	if len(s.b) == 0 {
		return 0, false
	}
	sel := s.b[0]
	s.b = s.b[1:]
	n := [...]int{1, 2, 4, 1}[sel&3]
	var buf [8]byte
	k := copy(buf[:n], s.b)
	s.b = s.b[k:]
	return uint64(sel>>2) | binary.LittleEndian.Uint64(buf[:])<<6, true
}

// maxNowSpan and maxDeltaSpan keep every time the harness makes within 210 years of the
// wheel's start, inside the 292 years a time.Duration can hold, so that Sub never
// saturates; the harness restarts both wheels when now would pass maxNowSpan.
const (
	maxNowSpan   = 120 * 365 * 24 * time.Hour
	maxDeltaSpan = 90 * 365 * 24 * time.Hour
)

// delta turns v into an offset for a deadline or an Advance, mixing the cases that matter:
// zero, sub-tick offsets on both sides of a boundary, whole ticks, level boundaries, and
// spans from seconds to decades, both ways.
func delta(v uint64, tick time.Duration) time.Duration {
	cat, v := v%8, v/8
	t := int64(tick)
	var d int64
	switch cat {
	case 0:
		d = 0
	case 1: // within a tick of now
		d = int64(v%uint64(2*t+1)) - t
	case 2: // whole ticks, near
		d = (int64(v%601) - 300) * t
	case 3: // the first two levels, any phase
		d = (int64(v%(1<<17))-(1<<16))*t + int64(v>>17)%t
	case 4: // far, forward
		d = int64(v%(1<<24))*t + int64(v>>24)%t
	case 5: // very far, forward: up to maxDeltaSpan
		d = int64(v % uint64(maxDeltaSpan))
	case 6: // far back, possibly before start
		d = -int64(v%(1<<22)) * t
	case 7: // exactly a level's span, or one nanosecond either side
		j := v % 5
		d = int64(1)<<(level0Bits+levelBits*j)*t + int64(v>>3%3) - 1
	}
	return time.Duration(min(d, int64(maxDeltaSpan)))
}

// harness drives a Wheel and a refWheel with the same operations and fails on the first
// difference in what fires (set and order), in stop results, Len, Now, Armed or When.
type harness struct {
	tb     testing.TB
	tick   time.Duration
	start  time.Time
	w      *Wheel[int]
	timers []Timer[int]
	m      *refWheel
	seed   uint64
	nAdv   uint64 // Advance calls so far, to vary reactions
	checkN int    // compare every timer's state every checkN operations
	ops    int

	restarts, fired int // for the test log

	gotW, gotM []int
	fireW      func(int)
	fireM      func(int)
}

func newHarness(tb testing.TB, tick time.Duration, start time.Time, n int, seed uint64) *harness {
	h := &harness{
		tb:     tb,
		tick:   tick,
		start:  start,
		w:      New[int](tick, start),
		timers: make([]Timer[int], n),
		m:      newRefWheel(tick, start, n),
		seed:   seed,
		checkN: max(1, n/16),
	}
	for i := range h.timers {
		h.timers[i].Init(i)
	}
	h.fireW = h.reactor(&h.gotW, wheelOps{h})
	h.fireM = h.reactor(&h.gotM, refOps{h.m})
	return h
}

// ops is what a fire callback can do, on either implementation.
type ops interface {
	now() time.Time
	schedule(id int, at time.Time)
	stop(id int) bool
	advance(now time.Time, fire func(int))
}

type wheelOps struct{ h *harness }

func (o wheelOps) now() time.Time                        { return o.h.w.Now() }
func (o wheelOps) schedule(id int, at time.Time)         { o.h.w.Schedule(&o.h.timers[id], at) }
func (o wheelOps) stop(id int) bool                      { return o.h.w.Stop(&o.h.timers[id]) }
func (o wheelOps) advance(now time.Time, fire func(int)) { o.h.w.Advance(now, fire) }

type refOps struct{ m *refWheel }

func (o refOps) now() time.Time                        { return o.m.now }
func (o refOps) schedule(id int, at time.Time)         { o.m.schedule(id, at) }
func (o refOps) stop(id int) bool                      { return o.m.stop(id) }
func (o refOps) advance(now time.Time, fire func(int)) { o.m.advance(now, fire) }

// stopMark encodes a Stop result in the fired log: stopMark + 2*id + 1 if it was armed.
const stopMark = 1 << 30

// reactor returns a fire callback that logs the timer and then reacts on o as a hash of
// (seed, Advance number, position in this Advance, id) dictates: nothing, re-arm itself,
// stop another timer, arm another, or a nested Advance (which must be a no-op). Deadlines
// at or before now (which fire in the same Advance) are only drawn for the first 64 firings
// of an Advance, so that a chain of self re-arms ends.
func (h *harness) reactor(log *[]int, o ops) func(int) {
	var fire func(int)
	fire = func(id int) {
		idx := uint64(len(*log))
		*log = append(*log, id)
		r := splitmix(h.seed ^ h.nAdv<<40 ^ idx<<16 ^ uint64(id))
		d := delta(splitmix(r), h.tick)
		if d <= 0 && idx >= 64 {
			d = -d + 1
		}
		other := int(splitmix(r^1) % uint64(len(h.timers)))
		switch r % 10 {
		case 4, 5: // periodic
			o.schedule(id, o.now().Add(d))
		case 6: // stop another, possibly due in this very tick
			*log = append(*log, stopResult(other, o.stop(other)))
		case 7: // arm another, possibly already due
			o.schedule(other, o.now().Add(d))
		case 8: // stop itself: already disarmed
			*log = append(*log, stopResult(id, o.stop(id)))
		case 9: // nested Advance: a no-op
			o.advance(o.now().Add(d), fire)
		}
	}
	return fire
}

func stopResult(id int, armed bool) int {
	if armed {
		return stopMark + 2*id + 1
	}
	return stopMark + 2*id
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// run applies operations drawn from src until it runs dry, checking after each.
func (h *harness) run(src source) {
	for {
		u, ok := src.next()
		if !ok {
			return
		}
		v, _ := src.next()
		id := int(u / 4 % uint64(len(h.timers)))
		switch u % 4 {
		case 0, 1:
			at := h.w.Now().Add(delta(v, h.tick))
			h.w.Schedule(&h.timers[id], at)
			h.m.schedule(id, at)
		case 2:
			if got, want := h.w.Stop(&h.timers[id]), h.m.stop(id); got != want {
				h.tb.Fatalf("op %d: Stop(%d) = %v, reference %v", h.ops, id, got, want)
			}
		case 3:
			d := delta(v, h.tick)
			if v%8 == 5 && v/8%16 != 0 {
				// Most decade-long jumps become jumps of up to a day, so that the
				// wheel is seldom emptied and timers build up on every level.
				d = time.Duration(v / 128 % uint64(24*time.Hour))
			}
			if h.w.Now().Sub(h.start)+d > maxNowSpan {
				h.restart()
			}
			now := h.w.Now().Add(d)
			h.nAdv++
			h.gotW, h.gotM = h.gotW[:0], h.gotM[:0]
			h.w.Advance(now, h.fireW)
			h.m.advance(now, h.fireM)
			for _, id := range h.gotW {
				if id < stopMark {
					h.fired++
				}
			}
			if !slices.Equal(h.gotW, h.gotM) {
				h.tb.Fatalf("op %d: Advance(%v) by %v fired %v, reference %v", h.ops, now.Sub(h.start), d, h.gotW, h.gotM)
			}
		}
		h.check()
		h.ops++
	}
}

// restart drains both wheels, checking the order, and replaces them with fresh ones that
// start at the current time, so that long runs keep every time within maxNowSpan of start.
func (h *harness) restart() {
	h.tb.Helper()
	var gotW, gotM []int
	far := h.w.Now().Add(maxDeltaSpan + time.Hour)
	h.w.Advance(far, func(id int) { gotW = append(gotW, id) })
	h.m.advance(far, func(id int) { gotM = append(gotM, id) })
	if !slices.Equal(gotW, gotM) {
		h.tb.Fatalf("op %d: draining Advance fired %v, reference %v", h.ops, gotW, gotM)
	}
	if h.w.Len() != 0 {
		h.tb.Fatalf("op %d: after draining Advance: Len() = %d, want 0", h.ops, h.w.Len())
	}
	h.restarts++
	h.fired += len(gotW)
	for i := range h.timers {
		h.timers[i] = Timer[int]{}
		h.timers[i].Init(i)
	}
	h.start = far
	h.w = New[int](h.tick, far)
	h.m = newRefWheel(h.tick, far, len(h.timers))
	h.fireM = h.reactor(&h.gotM, refOps{h.m})
}

func (h *harness) check() {
	h.tb.Helper()
	if got, want := h.w.Len(), h.m.len(); got != want {
		h.tb.Fatalf("op %d: Len() = %d, reference %d", h.ops, got, want)
	}
	if got, want := h.w.Now(), h.m.now; got != want {
		h.tb.Fatalf("op %d: Now() = %v, reference %v", h.ops, got, want)
	}
	if h.ops%h.checkN != 0 {
		return
	}
	for i := range h.timers {
		t, r := &h.timers[i], h.m.timers[i]
		// == rather than Equal: When must return the very value given to Schedule.
		if t.Armed() != r.armed || (!r.when.IsZero() && h.w.When(t) != r.when) {
			h.tb.Fatalf("op %d: timer %d: Armed() = %v, When() = %v; reference %v, %v",
				h.ops, i, t.Armed(), h.w.When(t), r.armed, r.when)
		}
	}
	h.checkNext()
}

// checkNext checks Next against the reference: never after the earliest armed timer's
// tick (or after Now while one is due), and, while none is due, after the current tick,
// so an owner sleeping until Next neither fires late nor wakes for nothing it already did.
func (h *harness) checkNext() {
	h.tb.Helper()
	next, ok := h.w.Next()
	first := int64(-1)
	for _, r := range h.m.timers {
		if r.armed && (first < 0 || r.tick < first) {
			first = r.tick
		}
	}
	if ok != (first >= 0) {
		h.tb.Fatalf("op %d: Next() ok = %v with %d timers armed", h.ops, ok, h.m.len())
	}
	if !ok {
		return
	}
	tickStart := func(k int64) time.Time { return h.start.Add(time.Duration(k * h.m.tick)) }
	if first <= h.m.cur {
		if next.After(h.w.Now()) {
			h.tb.Fatalf("op %d: Next() = %v with a timer due, after Now %v", h.ops, next.Sub(h.start), h.w.Now().Sub(h.start))
		}
		return
	}
	if next.After(tickStart(first)) || !next.After(tickStart(h.m.cur)) {
		h.tb.Fatalf("op %d: Next() = %v, want after the current tick %d and at or before the first armed tick %d (%v)",
			h.ops, next.Sub(h.start), h.m.cur, first, tickStart(first).Sub(h.start))
	}
}

// TestModel checks the wheel against refWheel over long random operation sequences with
// fixed seeds: schedules, reschedules, stops and Advances by zero, sub-tick, level-crossing
// and decade-long amounts, forward and back, with fire callbacks that re-arm, stop and arm.
func TestModel(t *testing.T) {
	tests := []struct {
		name   string
		tick   time.Duration
		start  time.Time
		timers int
		ops    int
		seed   uint64
	}{
		{name: "tick=10ms/timers=64", tick: 10 * time.Millisecond, start: time.Unix(1_700_000_000, 123), timers: 64, ops: 300_000, seed: 1},
		{name: "tick=1ns/timers=64", tick: time.Nanosecond, start: time.Unix(0, 0), timers: 64, ops: 200_000, seed: 2},
		{name: "tick=7ms/timers=8", tick: 7 * time.Millisecond, start: time.Unix(1_700_000_000, 999_999_999), timers: 8, ops: 200_000, seed: 3},
		{name: "tick=10ms/timers=1000/monotonic", tick: 10 * time.Millisecond, start: time.Now(), timers: 1000, ops: 60_000, seed: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops := tt.ops
			if testing.Short() {
				ops /= 10
			}
			h := newHarness(t, tt.tick, tt.start, tt.timers, tt.seed)
			h.run(&rngSource{r: rand.New(rand.NewPCG(tt.seed, 0x7469_6d65_7277_6865)), left: 2 * ops})
			h.restart() // everything still armed must fire, in the reference's order
			t.Logf("%d operations, %d restarts, %d timers fired", h.ops, h.restarts, h.fired)
		})
	}
}

// FuzzWheel decodes the input into an operation sequence (tick and timer count from the
// first byte) and checks the wheel against refWheel, as TestModel does.
func FuzzWheel(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x00, 0x01, 0x02, 0x03})
	f.Add([]byte("\x11schedule-stop-advance-reschedule\xff\xfe\xfd\x00\x00\x00\x07\x07\x07"))
	r := rand.New(rand.NewPCG(5, 5))
	for range 8 {
		b := make([]byte, 64+r.IntN(512))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		ticks := [...]time.Duration{time.Nanosecond, 3 * time.Nanosecond, time.Millisecond, 10 * time.Millisecond}
		tick := ticks[data[0]&3]
		n := 1 + int(data[0]>>2&15)
		start := time.Unix(1_700_000_000, int64(data[0])*1_000_003)
		h := newHarness(t, tick, start, n, uint64(len(data)))
		h.checkN = 1
		if len(data) > 1<<14 {
			data = data[:1<<14]
		}
		h.run(&byteSource{b: data[1:]})
		h.restart()
	})
}
