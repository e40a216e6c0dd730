package timerwheel

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
	"unsafe"
)

const testTick = 10 * time.Millisecond

// epoch is a start without a monotonic reading, so that every test time is reproducible.
var epoch = time.Unix(1_700_000_000, 0)

const (
	day  = 24 * time.Hour
	year = 365 * day
)

// collect returns a fire callback that appends each fired value to *got.
func collect(got *[]int) func(int) {
	return func(v int) { *got = append(*got, v) }
}

// TestFiresAtRoundedTick schedules one timer and checks that it fires in the first Advance
// at or after its deadline rounded up to the tick, not one nanosecond earlier, and once.
func TestFiresAtRoundedTick(t *testing.T) {
	tests := []struct {
		name   string
		at     time.Duration // deadline, after epoch
		fireAt time.Duration // first now that fires it, after epoch
	}{
		{name: "at start", at: 0, fireAt: 0},
		{name: "before start", at: -time.Hour, fireAt: 0},
		{name: "1ns", at: time.Nanosecond, fireAt: testTick},
		{name: "on a boundary", at: testTick, fireAt: testTick},
		{name: "just past a boundary", at: testTick + time.Nanosecond, fireAt: 2 * testTick},
		{name: "last level-0 slot", at: 255 * testTick, fireAt: 255 * testTick},
		{name: "first level-1 slot", at: 256 * testTick, fireAt: 256 * testTick},
		{name: "handshake 5s", at: 5 * time.Second, fireAt: 5 * time.Second},
		{name: "ping 30s", at: 30 * time.Second, fireAt: 30 * time.Second},
		{name: "idle 75s", at: 75 * time.Second, fireAt: 75 * time.Second},
		{name: "10min", at: 10 * time.Minute, fireAt: 10 * time.Minute},
		{name: "3 days", at: 3 * day, fireAt: 3 * day},
		{name: "3 days and 1ns", at: 3*day + time.Nanosecond, fireAt: 3*day + testTick},
		{name: "1 year", at: year, fireAt: year},
		{name: "200 years", at: 200*year + 3*time.Millisecond, fireAt: 200*year + testTick},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := New[int](testTick, epoch)
			var tm Timer[int]
			tm.Init(7)
			at := epoch.Add(tt.at)
			w.Schedule(&tm, at)
			if !tm.Armed() || w.Len() != 1 || w.When(&tm) != at {
				t.Fatalf("after Schedule: Armed() = %v, Len() = %d, When() = %v; want true, 1, %v", tm.Armed(), w.Len(), w.When(&tm), at)
			}
			var got []int
			if tt.fireAt > 0 {
				w.Advance(epoch.Add(tt.fireAt-time.Nanosecond), collect(&got))
				if len(got) != 0 {
					t.Fatalf("fired at %v, before %v", tt.fireAt-time.Nanosecond, tt.fireAt)
				}
			}
			w.Advance(epoch.Add(tt.fireAt), collect(&got))
			if !slices.Equal(got, []int{7}) {
				t.Fatalf("Advance(%v) fired %v, want [7]", tt.fireAt, got)
			}
			w.Advance(epoch.Add(tt.fireAt+time.Hour), collect(&got))
			if len(got) != 1 || tm.Armed() || w.Len() != 0 {
				t.Fatalf("after firing: fired %v, Armed() = %v, Len() = %d; want once, false, 0", got, tm.Armed(), w.Len())
			}
		})
	}
}

// TestCascadeStepwise arms the server's typical deadlines and advances in uneven steps
// of a little over a second, checking that each fires in the first Advance that reaches
// its deadline, after cascading down from whichever level it started in.
func TestCascadeStepwise(t *testing.T) {
	deadlines := []time.Duration{5 * time.Second, 30 * time.Second, 75 * time.Second, 10 * time.Minute, 3 * day}
	const step = time.Second + 7*time.Millisecond
	w := New[int](testTick, epoch)
	timers := make([]Timer[int], len(deadlines))
	for i, d := range deadlines {
		timers[i].Init(i)
		w.Schedule(&timers[i], epoch.Add(d))
	}
	firedAt := make([]time.Duration, len(deadlines))
	for now := step; w.Len() > 0; now += step {
		w.Advance(epoch.Add(now), func(i int) { firedAt[i] = now })
	}
	for i, d := range deadlines {
		if got, want := firedAt[i], (d+step-1)/step*step; got != want {
			t.Errorf("deadline %v fired at Advance(%v), want Advance(%v)", d, got, want)
		}
	}
}

// TestStop checks Stop's result and that a stopped timer never fires.
func TestStop(t *testing.T) {
	tests := []struct {
		name  string
		after time.Duration // Advance to this before stopping; the deadline is 1 s
		want  bool
	}{
		{name: "armed", after: 0, want: true},
		{name: "armed, half way", after: 500 * time.Millisecond, want: true},
		{name: "already fired", after: time.Second, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := New[int](testTick, epoch)
			var tm Timer[int]
			w.Schedule(&tm, epoch.Add(time.Second))
			var got []int
			w.Advance(epoch.Add(tt.after), collect(&got))
			if stopped := w.Stop(&tm); stopped != tt.want {
				t.Fatalf("Stop() = %v, want %v", stopped, tt.want)
			}
			if w.Stop(&tm) {
				t.Fatal("second Stop() = true, want false")
			}
			w.Advance(epoch.Add(time.Hour), collect(&got))
			wantFired := 0
			if tt.after >= time.Second {
				wantFired = 1 // before the Stop
			}
			if len(got) != wantFired {
				t.Fatalf("fired %d times, want %d", len(got), wantFired)
			}
			if tm.Armed() || w.Len() != 0 {
				t.Fatalf("after Stop: Armed() = %v, Len() = %d", tm.Armed(), w.Len())
			}
		})
	}
	t.Run("zero timer", func(t *testing.T) {
		w := New[int](testTick, epoch)
		var tm Timer[int]
		if w.Stop(&tm) || tm.Armed() || w.When(&tm) != epoch {
			t.Fatalf("zero Timer: Stop() = true or Armed() = true or When() = %v, want the wheel's start", w.When(&tm))
		}
	})
}

// TestReschedule moves an armed timer earlier and later, across levels, and checks that
// it fires at the new deadline only, once.
func TestReschedule(t *testing.T) {
	tests := []struct {
		name  string
		first time.Duration
		moved time.Duration
	}{
		{name: "earlier, same level", first: time.Second, moved: 500 * time.Millisecond},
		{name: "later, same level", first: 500 * time.Millisecond, moved: time.Second},
		{name: "earlier, down levels", first: 3 * day, moved: 5 * time.Second},
		{name: "later, up levels", first: 5 * time.Second, moved: 3 * day},
		{name: "into the past", first: time.Minute, moved: -time.Minute},
		{name: "same deadline", first: time.Minute, moved: time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := New[int](testTick, epoch)
			var tm Timer[int]
			w.Schedule(&tm, epoch.Add(tt.first))
			w.Reschedule(&tm, epoch.Add(tt.moved))
			if w.Len() != 1 || w.When(&tm) != epoch.Add(tt.moved) {
				t.Fatalf("after Reschedule: Len() = %d, When() = %v", w.Len(), w.When(&tm))
			}
			fireAt := max(tt.moved, 0)
			var got []int
			if fireAt > 0 {
				w.Advance(epoch.Add(fireAt-time.Nanosecond), collect(&got))
			}
			if len(got) != 0 {
				t.Fatalf("fired before its new deadline %v", tt.moved)
			}
			w.Advance(epoch.Add(fireAt), collect(&got))
			w.Advance(epoch.Add(4*day), collect(&got))
			if len(got) != 1 {
				t.Fatalf("fired %d times, want once at %v", len(got), fireAt)
			}
		})
	}
}

// TestFIFOWithinTick arms timers for one tick from every level (scheduled when the tick
// was far, near, and already due) and checks that they fire in the order of their last
// Schedule.
func TestFIFOWithinTick(t *testing.T) {
	w := New[int](testTick, epoch)
	deadline := epoch.Add(200 * time.Second) // tick 20000: level 2 from tick 0
	timers := make([]Timer[int], 1000)
	var want []int
	arm := func(i int) {
		timers[i].Init(i)
		w.Schedule(&timers[i], deadline.Add(-time.Duration(i%3)*time.Millisecond)) // same tick
		want = slices.DeleteFunc(want, func(v int) bool { return v == i })
		want = append(want, i)
	}
	var got []int
	for i := range 300 {
		arm(i)
	}
	w.Advance(epoch.Add(100*time.Second), collect(&got)) // the tick is now level 1
	for i := 300; i < 600; i++ {
		arm(i)
	}
	arm(5)                                               // a reschedule goes to the back
	w.Advance(epoch.Add(199*time.Second), collect(&got)) // level 0
	for i := 600; i < 1000; i++ {
		arm(i)
	}
	arm(310)
	w.Advance(deadline.Add(-testTick), collect(&got))
	if len(got) != 0 {
		t.Fatalf("fired %d timers a tick early", len(got))
	}
	w.Advance(deadline.Add(time.Hour), collect(&got))
	if !slices.Equal(got, want) {
		t.Fatalf("fired in order %v\nwant %v", got, want)
	}
}

// TestBigJump arms timers over a year and fires them all with one Advance of two years,
// which must come out sorted by rounded deadline, then by schedule order.
func TestBigJump(t *testing.T) {
	w := New[int](testTick, epoch)
	r := rand.New(rand.NewPCG(11, 12))
	const n = 20_000
	timers := make([]Timer[int], n)
	ticks := make([]int64, n)
	for i := range timers {
		d := time.Duration(r.Int64N(int64(year)))
		if i%4 == 0 {
			d = d / time.Second * time.Second // many ties
		}
		timers[i].Init(i)
		w.Schedule(&timers[i], epoch.Add(d))
		ticks[i] = int64((d + testTick - 1) / testTick)
	}
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	slices.SortStableFunc(want, func(a, b int) int { return cmp.Compare(ticks[a], ticks[b]) })
	var got []int
	w.Advance(epoch.Add(2*year), collect(&got))
	if !slices.Equal(got, want) {
		t.Fatalf("fired %d timers out of order (first difference at %d)", len(got), firstDiff(got, want))
	}
}

func firstDiff(a, b []int) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestHugeJumps advances a 1 ns wheel by centuries, empty and with a few timers: Advance
// must skip empty ticks rather than visit 10^18 of them one by one.
func TestHugeJumps(t *testing.T) {
	w := New[int](time.Nanosecond, epoch)
	w.Advance(epoch.Add(100*year), nil)
	if w.Now() != epoch.Add(100*year) {
		t.Fatalf("Now() = %v after an Advance of an empty wheel", w.Now())
	}
	var a, b, c Timer[int]
	a.Init(1)
	b.Init(2)
	c.Init(3)
	w.Schedule(&c, w.Now().Add(150*year+1))
	w.Schedule(&b, w.Now().Add(time.Hour))
	w.Schedule(&a, w.Now().Add(1))
	var got []int
	w.Advance(w.Now().Add(150*year), collect(&got))
	if !slices.Equal(got, []int{1, 2}) || !c.Armed() {
		t.Fatalf("fired %v, want [1 2] with 3 still armed", got)
	}
	w.Advance(w.Now().Add(1), collect(&got))
	if !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("fired %v, want [1 2 3]", got)
	}
}

// TestSaturatedDeadline checks a deadline beyond the 292 years a time.Duration can span:
// it is far but not infinite, and fires once the wheel's time is there too.
func TestSaturatedDeadline(t *testing.T) {
	w := New[int](testTick, epoch)
	var tm Timer[int]
	w.Schedule(&tm, epoch.Add(200*year).Add(200*year))
	var got []int
	w.Advance(epoch.Add(200*year), collect(&got))
	if len(got) != 0 {
		t.Fatal("fired 200 years early")
	}
	w.Advance(epoch.Add(200*year).Add(200*year), collect(&got))
	if len(got) != 1 {
		t.Fatalf("fired %d times, want 1", len(got))
	}
}

// TestAdvanceBackwards checks that an Advance to an earlier time changes nothing.
func TestAdvanceBackwards(t *testing.T) {
	w := New[int](testTick, epoch)
	var due, later Timer[int]
	w.Advance(epoch.Add(time.Minute), nil)
	w.Schedule(&due, epoch.Add(30*time.Second)) // already due
	w.Schedule(&later, epoch.Add(2*time.Minute))
	var got []int
	w.Advance(epoch.Add(time.Minute-time.Nanosecond), collect(&got))
	w.Advance(epoch, collect(&got))
	if len(got) != 0 || w.Now() != epoch.Add(time.Minute) || w.Len() != 2 {
		t.Fatalf("backwards Advance: fired %v, Now() = %v, Len() = %d", got, w.Now().Sub(epoch), w.Len())
	}
	w.Advance(epoch.Add(time.Minute), collect(&got))
	if len(got) != 1 || due.Armed() || !later.Armed() {
		t.Fatalf("Advance(Now()) fired %v, want the due timer only", got)
	}
}

// TestDueNow checks that a deadline at or before Now fires on the next Advance, even one
// to Now itself, including deadlines that fall after Now's last tick boundary.
func TestDueNow(t *testing.T) {
	tests := []struct {
		name string
		at   time.Duration // relative to Now, which is 15 ms: half way through a tick
	}{
		{name: "at Now", at: 0},
		{name: "after the last boundary", at: -2 * time.Millisecond},
		{name: "on the last boundary", at: -5 * time.Millisecond},
		{name: "ticks ago", at: -time.Second},
		{name: "before start", at: -time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := New[int](testTick, epoch)
			w.Advance(epoch.Add(15*time.Millisecond), nil)
			var tm Timer[int]
			w.Schedule(&tm, w.Now().Add(tt.at))
			var got []int
			w.Advance(w.Now(), collect(&got))
			if len(got) != 1 {
				t.Fatalf("Advance(Now()) fired %d timers, want 1", len(got))
			}
		})
	}
	t.Run("1ns after Now", func(t *testing.T) {
		w := New[int](testTick, epoch)
		w.Advance(epoch.Add(15*time.Millisecond), nil)
		var tm Timer[int]
		w.Schedule(&tm, w.Now().Add(time.Nanosecond))
		var got []int
		w.Advance(epoch.Add(20*time.Millisecond-time.Nanosecond), collect(&got))
		if len(got) != 0 {
			t.Fatal("fired before its tick boundary")
		}
		w.Advance(epoch.Add(20*time.Millisecond), collect(&got))
		if len(got) != 1 {
			t.Fatalf("fired %d times at its tick boundary, want 1", len(got))
		}
	})
}

// TestFireCallbacks checks what fire may do to the wheel while Advance runs.
func TestFireCallbacks(t *testing.T) {
	t.Run("periodic", func(t *testing.T) {
		w := New[int](testTick, epoch)
		var tm Timer[int]
		var firedAt []time.Duration
		w.Schedule(&tm, epoch.Add(time.Second))
		w.Advance(epoch.Add(10500*time.Millisecond), func(int) {
			if tm.Armed() {
				t.Error("Armed() = true inside its own fire")
			}
			firedAt = append(firedAt, w.When(&tm).Sub(epoch))
			w.Schedule(&tm, w.When(&tm).Add(time.Second))
		})
		if len(firedAt) != 10 || firedAt[9] != 10*time.Second || !tm.Armed() || w.Len() != 1 {
			t.Fatalf("fired for %v, Armed() = %v; want 1s..10s, re-armed", firedAt, tm.Armed())
		}
	})
	t.Run("stop another due in the same tick", func(t *testing.T) {
		w := New[int](testTick, epoch)
		timers := make([]Timer[int], 3)
		for i := range timers {
			timers[i].Init(i)
			w.Schedule(&timers[i], epoch.Add(time.Second))
		}
		var got []int
		stopped := false
		w.Advance(epoch.Add(time.Second), func(i int) {
			got = append(got, i)
			if i == 0 {
				stopped = w.Stop(&timers[1])
			}
		})
		if !stopped || !slices.Equal(got, []int{0, 2}) || w.Len() != 0 {
			t.Fatalf("fired %v, Stop() = %v; want [0 2], true", got, stopped)
		}
	})
	t.Run("arm timers already due", func(t *testing.T) {
		w := New[int](testTick, epoch)
		timers := make([]Timer[int], 6)
		for i := range timers {
			timers[i].Init(i)
		}
		w.Schedule(&timers[0], epoch.Add(time.Second))
		w.Schedule(&timers[1], epoch.Add(time.Second))
		w.Schedule(&timers[2], epoch.Add(3*time.Second))
		var got []int
		w.Advance(epoch.Add(10*time.Second), func(i int) {
			got = append(got, i)
			if i == 0 {
				w.Schedule(&timers[3], epoch.Add(5*time.Second)) // later tick, before now
				w.Schedule(&timers[4], epoch)                    // long past
				w.Schedule(&timers[5], w.Now())                  // now
			}
		})
		// 4 is due in the tick being processed, after 1 already there; 3 and 5 keep
		// their own ticks, 5 s and 10 s, in order with 2 at 3 s.
		if want := []int{0, 1, 4, 2, 3, 5}; !slices.Equal(got, want) || w.Len() != 0 {
			t.Fatalf("fired %v, want %v", got, want)
		}
	})
	t.Run("arm for before now but after its last boundary", func(t *testing.T) {
		w := New[int](testTick, epoch)
		timers := make([]Timer[int], 4)
		for i := range timers {
			timers[i].Init(i)
		}
		w.Schedule(&timers[0], epoch.Add(10*time.Millisecond))
		w.Schedule(&timers[1], epoch.Add(20*time.Millisecond))
		var got []int
		w.Advance(epoch.Add(55*time.Millisecond), func(i int) {
			got = append(got, i)
			if i == 0 {
				w.Schedule(&timers[2], epoch.Add(52*time.Millisecond)) // rounds to 60 ms: due now
				w.Schedule(&timers[3], epoch.Add(35*time.Millisecond)) // rounds to 40 ms
			}
		})
		if want := []int{0, 2, 1, 3}; !slices.Equal(got, want) {
			t.Fatalf("fired %v, want %v", got, want)
		}
	})
	t.Run("re-arm itself already due", func(t *testing.T) {
		w := New[int](testTick, epoch)
		var tm Timer[int]
		w.Schedule(&tm, epoch.Add(time.Second))
		n := 0
		w.Advance(epoch.Add(time.Second), func(int) {
			if n++; n < 3 {
				w.Schedule(&tm, w.Now())
			}
		})
		if n != 3 || tm.Armed() {
			t.Fatalf("fired %d times, want 3", n)
		}
	})
	t.Run("nested Advance is a no-op", func(t *testing.T) {
		w := New[int](testTick, epoch)
		timers := make([]Timer[int], 2)
		timers[0].Init(0)
		timers[1].Init(1)
		w.Schedule(&timers[0], epoch.Add(time.Second))
		w.Schedule(&timers[1], epoch.Add(time.Minute))
		var got []int
		var fire func(int)
		fire = func(i int) {
			got = append(got, i)
			w.Advance(epoch.Add(time.Hour), fire)
		}
		w.Advance(epoch.Add(time.Second), fire)
		if !slices.Equal(got, []int{0}) || w.Now() != epoch.Add(time.Second) {
			t.Fatalf("fired %v, Now() = %v; want [0] at 1s", got, w.Now().Sub(epoch))
		}
	})
	t.Run("Now inside fire", func(t *testing.T) {
		w := New[int](testTick, epoch)
		var tm Timer[int]
		w.Schedule(&tm, epoch.Add(time.Second))
		var now time.Time
		w.Advance(epoch.Add(time.Minute), func(int) { now = w.Now() })
		if now != epoch.Add(time.Minute) {
			t.Fatalf("Now() inside fire = %v, want the Advance's now", now.Sub(epoch))
		}
	})
}

// TestInit checks that fire and Value get the value given to the latest Init.
func TestInit(t *testing.T) {
	type conn struct {
		id    int
		timer Timer[*conn]
	}
	w := New[*conn](testTick, epoch)
	a, b := &conn{id: 1}, &conn{id: 2}
	if a.timer.Value() != nil {
		t.Fatalf("Value of a zero Timer = %v, want nil", a.timer.Value())
	}
	a.timer.Init(a)
	if a.timer.Value() != a {
		t.Fatalf("Value after Init(a) = %p, want %p", a.timer.Value(), a)
	}
	w.Schedule(&a.timer, epoch.Add(time.Second))
	var got []int
	fire := func(c *conn) { got = append(got, c.id) }
	w.Advance(epoch.Add(time.Second), fire)
	a.timer.Init(b)
	if a.timer.Value() != b {
		t.Fatalf("Value after Init(b) = %p, want %p", a.timer.Value(), b)
	}
	w.Schedule(&a.timer, epoch.Add(2*time.Second))
	w.Advance(epoch.Add(2*time.Second), fire)
	if !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("fired %v, want [1 2]", got)
	}
}

// TestNewPanics checks that New rejects a tick that is not positive.
func TestNewPanics(t *testing.T) {
	for _, tick := range []time.Duration{0, -time.Millisecond} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%v) did not panic", tick)
				}
			}()
			New[int](tick, epoch)
		}()
	}
}

// TestTimerSize checks the memory promise: a Timer with a pointer value is 32 bytes (one
// lives in every connection).
func TestTimerSize(t *testing.T) {
	size := unsafe.Sizeof(Timer[*int]{})
	if size > 32 {
		t.Fatalf("Timer[*int] is %d bytes, want at most 32", size)
	}
	t.Logf("Timer[*int] is %d bytes; Wheel[*int] is %d bytes", size, unsafe.Sizeof(Wheel[*int]{}))
}

// TestNoAllocs checks that Schedule, Reschedule, Stop and Advance allocate nothing.
func TestNoAllocs(t *testing.T) {
	w := New[int](testTick, epoch)
	timers := make([]Timer[int], 1000)
	for i := range timers {
		timers[i].Init(i)
		w.Schedule(&timers[i], epoch.Add(time.Duration(i)*37*time.Millisecond))
	}
	now := epoch
	i := 0
	fire := func(v int) { w.Schedule(&timers[v], now.Add(37*time.Second)) }
	allocs := testing.AllocsPerRun(10_000, func() {
		tm := &timers[i%len(timers)]
		w.Schedule(tm, now.Add(time.Duration(i%5000)*time.Millisecond))
		w.Reschedule(tm, now.Add(time.Duration(i%70)*time.Second))
		w.Stop(tm)
		w.Schedule(tm, now.Add(time.Hour))
		now = now.Add(testTick)
		w.Advance(now, fire)
		i++
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run, want 0", allocs)
	}
}

// TestUntilBoundary checks that the delay always lands on a multiple of the tick since the
// Unix epoch and is never zero (a ticker must not spin).
func TestUntilBoundary(t *testing.T) {
	tick := 100 * time.Millisecond
	for _, tt := range []struct {
		now  time.Time
		want time.Duration
	}{
		{now: time.Unix(1700000000, 0), want: tick},
		{now: time.Unix(1700000000, 1), want: tick - 1},
		{now: time.Unix(1700000000, int64(99*time.Millisecond)), want: time.Millisecond},
		{now: time.Unix(1700000000, int64(250*time.Millisecond)), want: 50 * time.Millisecond},
	} {
		got := UntilBoundary(tt.now, tick)
		if got != tt.want {
			t.Errorf("UntilBoundary(%v, %v) = %v, want %v", tt.now.UnixNano(), tick, got, tt.want)
		}
		if next := tt.now.Add(got).UnixNano(); next%int64(tick) != 0 {
			t.Errorf("now + %v = %d is not on a %v boundary", got, next, tick)
		}
	}
	if got := UntilBoundary(time.Now(), 0); got != 0 {
		t.Errorf("UntilBoundary with a zero tick = %v, want 0", got)
	}
}
