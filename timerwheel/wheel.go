package timerwheel

import (
	"math"
	"math/bits"
	"time"
)

const (
	// level0Bits is log2 of the number of one-tick slots in level 0. 256 slots (2.56 s
	// at a 10 ms tick) keep level 0's bitmap at four words, yet let a timer due within
	// a few seconds fire without ever cascading.
	level0Bits  = 8
	level0Slots = 1 << level0Bits

	// levelBits is log2 of the number of slots in each upper level: 64 slots let one
	// uint64 hold a level's occupancy bitmap, and each level spans 64 times the one below.
	levelBits  = 6
	levelSlots = 1 << levelBits

	// upperLevels is the number of levels above level 0: 8 + 6*10 = 68 bits is the first
	// width that covers every non-negative int64 tick (63 bits), so any deadline, even
	// centuries away with a 1 ns tick, has an exact slot and never needs clamping.
	upperLevels = (63 - level0Bits + levelBits - 1) / levelBits
)

// Timer is an intrusive wheel entry: embed it in the value it times so that arming and
// disarming never allocate. The zero Timer is disarmed. A Timer may be armed in at most
// one Wheel at a time, and it is owned by that Wheel's goroutine while armed: only the
// owner may call its methods or pass it to the Wheel. A Timer must not be copied while
// armed.
//
// A Timer is 32 bytes when T is a pointer: two list links, the deadline (as nanoseconds
// since the wheel's start, kept exactly so its tick can be recomputed when it cascades)
// and the value. It holds no time.Time (24 bytes) because one lives in every connection.
type Timer[T any] struct {
	next, prev *Timer[T] // list links, through a wheel sentinel; next == nil means disarmed
	at         int64     // deadline in nanoseconds since the wheel's start (Time.Sub, so saturated)
	value      T
}

// Init sets the value passed to fire when t expires. Call it once before the first
// Schedule; it may be called again to change the value, which the next firing then passes.
func (t *Timer[T]) Init(v T) { t.value = v }

// Value returns the value given to Init, armed or not. An owner that needs the value
// anyway may keep it only here instead of in a field of its own.
func (t *Timer[T]) Value() T { return t.value }

// Armed reports whether t is scheduled, that is, whether it will fire unless stopped.
// It is false for the zero Timer, and inside t's own fire callback until fire re-arms t.
func (t *Timer[T]) Armed() bool { return t.next != nil }

// When returns the deadline t was last scheduled for in w: the wheel's start plus the
// exact nanoseconds between it and the deadline given to Schedule, so it equals that
// deadline for any deadline within 292 years of start (time.Time's == also needs the same
// location and monotonic reading as start). For a Timer never scheduled it returns start.
// It must be called on the owning goroutine, armed or not.
func (w *Wheel[T]) When(t *Timer[T]) time.Time { return w.start.Add(time.Duration(t.at)) }

// Wheel is a hierarchical timing wheel that fires each armed Timer once its deadline,
// rounded up to the wheel's tick, has passed. It reads no clock: the owner moves it with
// Advance. A Wheel is not safe for concurrent use; one goroutine (an event loop) owns it
// and makes every call, including those on the Timers armed in it. The zero Wheel is not
// usable; call New, and do not copy the Wheel it returns.
type Wheel[T any] struct {
	tick  int64     // resolution in nanoseconds; > 0
	recip uint64    // floor((2^64-1) / tick), to divide by tick with a multiplication
	start time.Time // time of tick 0
	now   time.Time // the last Advance's now (set at its start), or start

	// cur is the last tick processed; during Advance, the tick being processed. Every
	// armed timer that is due is on due; every other one has a tick after cur and is in
	// the slot that tick selects relative to cur (see insert). Occupancy bits may
	// outlive the slot's last timer (Stop does not work out which slot it leaves);
	// step clears them.
	cur int64
	// target is the tick of now: the last tick the current (or last) Advance processes.
	target int64

	n         int  // armed timers
	advancing bool // inside Advance: a nested Advance is a no-op

	occ0 [level0Slots / 64]uint64 // occupancy bitmap of slot0
	occ  [upperLevels]uint64      // occupancy bitmap of each upper level

	// Each list is circular through a sentinel Timer, so that Stop unlinks a timer
	// without knowing which list holds it.
	due   Timer[T] // timers to fire before cur moves on, in firing order
	slot0 [level0Slots]Timer[T]
	slots [upperLevels][levelSlots]Timer[T]
}

// New returns an empty wheel whose time starts at start, with resolution tick. Deadlines
// are rounded up to a whole number of ticks after start, so timers fire at most one tick
// late; 10 ms is a good tick for network timeouts. New panics if tick is not positive, as
// time.NewTicker does: that is a programming error, not a run-time condition. The Wheel
// holds 897 list sentinels, each the size of a Timer[T] (28 KiB for a pointer T),
// whatever the number of timers.
func New[T any](tick time.Duration, start time.Time) *Wheel[T] {
	if tick <= 0 {
		panic("timerwheel: non-positive tick for New")
	}
	w := &Wheel[T]{tick: int64(tick), recip: math.MaxUint64 / uint64(tick), start: start, now: start}
	w.due.clear()
	for i := range w.slot0 {
		w.slot0[i].clear()
	}
	for l := range w.slots {
		for i := range w.slots[l] {
			w.slots[l][i].clear()
		}
	}
	return w
}

// Len returns the number of armed timers. It must be called on the owning goroutine.
func (w *Wheel[T]) Len() int { return w.n }

// Now returns the wheel's current time: the now of the last Advance that was not a no-op
// (during that Advance too, so fire callbacks see it), or the start given to New. It must
// be called on the owning goroutine.
func (w *Wheel[T]) Now() time.Time { return w.now }

// Next returns a time at or before every armed timer's rounded deadline, so that an owner
// that calls Advance no later than Next never fires a timer late, and may sleep until
// then: the start of the earliest tick whose slot holds a timer, or Now while a timer is
// already due. It is early rather than exact where a timer waits in a coarser slot (the
// Advance at the slot's start moves it to a finer one, after which Next is exact), and
// where a slot's timers were all stopped (it counts until an Advance passes it). ok is
// false when no timer is armed. Next is O(levels) and must be called on the owning
// goroutine.
func (w *Wheel[T]) Next() (at time.Time, ok bool) {
	if w.n == 0 {
		return time.Time{}, false
	}
	if w.due.next != &w.due {
		return w.now, true
	}
	_, _, k, ok := w.earliest() // an armed timer not due is in a marked slot
	return w.tickTime(k), ok
}

// tickTime returns the start of tick k, saturating where k ticks overflow a Duration.
func (w *Wheel[T]) tickTime(k int64) time.Time {
	if k > math.MaxInt64/w.tick {
		return w.start.Add(math.MaxInt64)
	}
	return w.start.Add(time.Duration(k * w.tick))
}

// Schedule arms t to fire at at, or moves it there if t is already armed in w: Schedule is
// also Reschedule. The deadline is rounded up to the next tick boundary after the wheel's
// start; a deadline at or before Now fires on the next Advance, and, when Schedule is
// called from inside fire, a deadline at or before that Advance's now fires within the
// same Advance. Timers that fall in the same tick fire in the order of their last Schedule.
// Schedule is O(1), never allocates, and must be called on the owning goroutine; t must
// not be armed in another Wheel.
func (w *Wheel[T]) Schedule(t *Timer[T], at time.Time) {
	if t.next != nil {
		t.unlink()
	} else {
		w.n++
	}
	t.at = int64(at.Sub(w.start))
	e := w.ceilTick(t.at)
	// A deadline at or before now, but after its last tick boundary, rounds up to
	// target+1; it is nonetheless due now.
	if e == w.target+1 && !at.After(w.now) {
		e = w.cur
	}
	w.insert(t, e)
}

// Reschedule is Schedule, named for call sites that move an armed timer.
func (w *Wheel[T]) Reschedule(t *Timer[T], at time.Time) { w.Schedule(t, at) }

// Stop disarms t and reports whether it was armed; a stopped timer does not fire, even if
// it was due in the tick being processed. Stop is O(1), never allocates, and must be
// called on the owning goroutine; an armed t must be armed in w, not in another Wheel.
func (w *Wheel[T]) Stop(t *Timer[T]) bool {
	if t.next == nil {
		return false
	}
	t.unlink()
	w.n--
	return true
}

// Advance moves the wheel's time to now and calls fire(v), on the caller's goroutine, for
// each timer whose rounded deadline is at or before now, disarming each one before its
// call. Timers fire in order of their rounded deadline, and in order of their last
// Schedule within one tick. fire may Schedule or Stop any timer, including the one firing;
// timers it schedules for at or before now fire later in the same Advance, and timers it
// stops do not fire. fire must not be nil while timers are due.
//
// Advance with now before Now is a no-op, and so is an Advance called from inside fire.
// Its cost is proportional to the timers fired plus the timers cascaded to a finer level
// (each timer cascades at most once per level), plus a few bitmap scans per slot that
// holds or held a timer: empty stretches of time cost nothing, so a jump of days costs no
// more than the timers it fires.
// Advance allocates nothing itself. It must be called on the owning goroutine.
func (w *Wheel[T]) Advance(now time.Time, fire func(T)) {
	if w.advancing || now.Before(w.now) {
		return
	}
	w.advancing = true
	// The deferred reset keeps the wheel usable if fire panics and the owner recovers:
	// between two fire calls the wheel's state is always consistent.
	defer w.endAdvance()
	w.now = now
	// The max only matters if the owner mixes times with and without monotonic
	// readings, so that now passes Before yet lies behind the wheel's tick.
	w.target = max(w.floorTick(now), w.cur)
	for {
		// Pop from the head so that fire can stop or schedule any timer, this list
		// included: timers it makes due are appended and fire in this same loop.
		for w.due.next != &w.due {
			t := w.due.next
			t.unlink()
			w.n--
			fire(t.value)
		}
		if !w.step() {
			break
		}
	}
	w.cur = w.target
}

func (w *Wheel[T]) endAdvance() { w.advancing = false }

// step processes the earliest occupied slot if its first tick is at or before target:
// a level-0 slot becomes the due list, an upper slot cascades into finer levels (and due).
// It reports whether it processed one; false means no timer is due up to target. A slot
// whose bit outlived its timers is processed like any other, as a no-op.
func (w *Wheel[T]) step() bool {
	l, s, k, ok := w.earliest()
	if !ok || k > w.target {
		return false
	}
	w.cur = k
	if l < 0 {
		w.occ0[s>>6] &^= 1 << (s & 63)
		w.due.take(&w.slot0[s]) // due is empty: Advance drains it before each step
		return true
	}
	w.occ[l] &^= 1 << s
	// Detach the list, then walk it: insert never puts a timer back in this slot (its
	// tick now agrees with cur on this level), and the last timer's next is still the
	// sentinel, which ends the walk.
	head := &w.slots[l][s]
	t := head.next
	head.clear()
	for t != head {
		next := t.next
		w.insert(t, w.ceilTick(t.at))
		t = next
	}
	return true
}

// earliest returns the earliest occupied slot: its level (-1 for level 0, else the upper
// level's index), its index in that level, and its first tick k; ok is false when no
// slot is marked.
//
// Because insert places a timer by the highest bit in which its tick differs from cur,
// every occupied slot of a level lies after cur's own slot at that level (there is no
// wrap-around), and every slot of a finer level ends before the next slot of a coarser
// one. So the lowest set bit of the lowest non-empty level is the earliest event.
func (w *Wheel[T]) earliest() (level, s int, k int64, ok bool) {
	for i, word := range w.occ0 {
		if word != 0 {
			s = i<<6 | bits.TrailingZeros64(word)
			return -1, s, w.cur&^(level0Slots-1) | int64(s), true
		}
	}
	for l, word := range w.occ {
		if word != 0 {
			s = bits.TrailingZeros64(word)
			shift := level0Bits + levelBits*l
			// For the top level the shift below is 68: Go defines that as 0, so the mask
			// is -1 and clears every bit of cur, as it should.
			return l, s, w.cur&^(int64(1)<<(shift+levelBits)-1) | int64(s)<<shift, true
		}
	}
	return 0, 0, 0, false
}

// ceilTick returns the deadline d nanoseconds after start in ticks since start, rounded
// up; deadlines at or before start give 0.
func (w *Wheel[T]) ceilTick(d int64) int64 {
	if d <= 0 {
		return 0
	}
	e, r := w.divTick(d)
	if r != 0 && d != math.MaxInt64 {
		// A saturated Sub (about 292 years after start) rounds down like floorTick
		// does for a saturated now, so that such a deadline can still fire.
		e++
	}
	return e
}

// floorTick returns the last tick at or before now, or 0 if now is before start.
func (w *Wheel[T]) floorTick(now time.Time) int64 {
	d := int64(now.Sub(w.start))
	if d <= 0 {
		return 0
	}
	e, _ := w.divTick(d)
	return e
}

// divTick returns d / tick and d % tick for d >= 0, without a division instruction:
// with recip = floor((2^64-1)/tick), hi(d*recip) is below d/tick by less than one,
// so the quotient it gives is exact or one short, which the remainder reveals.
func (w *Wheel[T]) divTick(d int64) (q, r int64) {
	hi, _ := bits.Mul64(uint64(d), w.recip)
	q = int64(hi)
	r = d - q*w.tick
	if r >= w.tick {
		q++
		r -= w.tick
	}
	return q, r
}

// insert links t, due at tick e, into the list that e selects relative to cur: due if e is
// at or before cur; otherwise the level holding the highest bit in which e and cur
// differ, in the slot given by e's bits at that level. All timers with one tick are
// therefore always in one list, in the order they got there, and cascading keeps that
// order: this is what makes firing FIFO within a tick. A timer in a slot always has
// e = ceilTick(t.at), so cascading can recompute e rather than store it.
func (w *Wheel[T]) insert(t *Timer[T], e int64) {
	if e <= w.cur {
		w.due.pushBack(t)
		return
	}
	x := uint64(e ^ w.cur)
	if x < level0Slots {
		s := e & (level0Slots - 1)
		w.slot0[s].pushBack(t)
		w.occ0[s>>6] |= 1 << (s & 63)
		return
	}
	l := (bits.Len64(x) - level0Bits - 1) / levelBits
	s := e >> (level0Bits + levelBits*l) & (levelSlots - 1)
	w.slots[l][s].pushBack(t)
	w.occ[l] |= 1 << s
}

// clear makes the sentinel s an empty list.
func (s *Timer[T]) clear() { s.next, s.prev = s, s }

// pushBack appends t to the list whose sentinel is s.
func (s *Timer[T]) pushBack(t *Timer[T]) {
	tail := s.prev
	t.next, t.prev = s, tail
	tail.next = t
	s.prev = t
}

// take moves every timer of the list whose sentinel is from to the empty list s.
func (s *Timer[T]) take(from *Timer[T]) {
	if from.next == from {
		return
	}
	first, last := from.next, from.prev
	s.next, first.prev = first, s
	s.prev, last.next = last, s
	from.clear()
}

// unlink removes the armed t from its list and marks it disarmed.
func (t *Timer[T]) unlink() {
	t.prev.next = t.next
	t.next.prev = t.prev
	t.next, t.prev = nil, nil
}
