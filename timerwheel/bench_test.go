package timerwheel

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// benchSizes are the armed-timer populations: a small server, a busy loop, and the
// million sockets one loop must hold.
var benchSizes = []int{1_000, 100_000, 1_000_000}

// benchConn stands in for a connection: the timed value with its Timer embedded.
type benchConn struct {
	id    int
	timer Timer[*benchConn]
}

// armedWheel returns a wheel starting at start with n connections armed at random
// deadlines within spread of start.
func armedWheel(n int, spread time.Duration, start time.Time) (*Wheel[*benchConn], []benchConn) {
	w := New[*benchConn](testTick, start)
	conns := make([]benchConn, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range conns {
		c := &conns[i]
		c.id = i
		c.timer.Init(c)
		w.Schedule(&c.timer, start.Add(time.Duration(r.Int64N(int64(spread)))))
	}
	return w, conns
}

// benchOffsets returns 1024 random offsets within spread, drawn before timing starts so
// that the loop measures the timer operations, not the random number generator.
func benchOffsets(spread time.Duration) *[1024]time.Duration {
	var d [1024]time.Duration
	r := rand.New(rand.NewPCG(3, 4))
	for i := range d {
		d[i] = time.Duration(r.Int64N(int64(spread)))
	}
	return &d
}

// BenchmarkScheduleStop measures arming and disarming one more timer in a wheel holding
// armed=N timers spread over 60 s: the cost a connection pays to set and clear a deadline.
func BenchmarkScheduleStop(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("armed=%d", n), func(b *testing.B) {
			start := time.Now()
			w, conns := armedWheel(n, 60*time.Second, start)
			offsets := benchOffsets(60 * time.Second)
			var at [1024]time.Time
			for i, d := range offsets {
				at[i] = start.Add(d)
			}
			c := &benchConn{id: -1}
			c.timer.Init(c)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				w.Schedule(&c.timer, at[i&1023])
				w.Stop(&c.timer)
				i++
			}
			runtime.KeepAlive(conns)
		})
	}
}

// BenchmarkReschedule measures moving an armed timer to a new deadline within 60 s, in a
// wheel holding armed=N timers; each op moves the next of the N timers in turn, so at
// large N the timer and its list neighbours are usually not in cache, as on a busy server.
func BenchmarkReschedule(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("armed=%d", n), func(b *testing.B) {
			start := time.Now()
			w, conns := armedWheel(n, 60*time.Second, start)
			offsets := benchOffsets(60 * time.Second)
			var at [1024]time.Time
			for i, d := range offsets {
				at[i] = start.Add(d)
			}
			b.ReportAllocs()
			i, j := 0, 0
			for b.Loop() {
				w.Reschedule(&conns[j].timer, at[i&1023])
				i++
				if j++; j == n {
					j = 0
				}
			}
		})
	}
}

// BenchmarkAdvance measures one 10 ms tick of a wheel holding armed=N timers spread over
// 30 s, each re-armed 30 s after it fires, so the population stays N and every tick fires
// about N/3000 timers (reported as fired/op) and cascades as many.
func BenchmarkAdvance(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("armed=%d", n), func(b *testing.B) {
			start := time.Now()
			w, conns := armedWheel(n, 30*time.Second, start)
			now := start
			fired := 0
			fire := func(c *benchConn) {
				fired++
				w.Schedule(&c.timer, now.Add(30*time.Second))
			}
			b.ReportAllocs()
			ticks := 0
			for b.Loop() {
				now = now.Add(testTick)
				w.Advance(now, fire)
				ticks++
			}
			b.ReportMetric(float64(fired)/float64(ticks), "fired/op")
			if w.Len() != n {
				b.Fatalf("Len() = %d after %d ticks, want %d", w.Len(), ticks, n)
			}
			runtime.KeepAlive(conns)
		})
	}
}

// BenchmarkTimeTimerResetStop is the baseline twin of BenchmarkScheduleStop: Reset and
// Stop of one time.Timer while armed=N other AfterFunc timers are live in the runtime.
// All deadlines are an hour away, spread over 60 s, so none fires during the run.
func BenchmarkTimeTimerResetStop(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("armed=%d", n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			f := func() {}
			timers := make([]*time.Timer, n)
			for i := range timers {
				timers[i] = time.AfterFunc(time.Hour+time.Duration(r.Int64N(int64(60*time.Second))), f)
			}
			offsets := benchOffsets(60 * time.Second)
			var d [1024]time.Duration
			for i, o := range offsets {
				d[i] = time.Hour + o
			}
			t := time.AfterFunc(time.Hour, f)
			t.Stop()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				t.Reset(d[i&1023])
				t.Stop()
				i++
			}
			for _, t := range timers {
				t.Stop()
			}
		})
	}
}

// memTimers is the population for BenchmarkBytesPerTimer.
const memTimers = 1_000_000

// memBase, memWheelConn and memStdConn are a small timed value (16 bytes) alone, with an
// embedded wheel Timer, and with a *time.Timer from AfterFunc. 16 bytes puts the bare
// value and the one with a Timer[*T] (64 bytes) exactly on allocator size classes, so
// that the difference is the timer's own cost, not rounding; with other sizes the
// allocator's rounding (at most 12.5% above 128 bytes) adds to either side.
type (
	memBase      struct{ id, state uint64 }
	memWheelConn struct {
		id, state uint64
		timer     Timer[*memWheelConn]
	}
	memStdConn struct {
		id, state uint64
		timer     *time.Timer
	}
)

// liveHeap returns the bytes of live heap objects after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// heapPer returns the live heap growth per element, in bytes, while build's result is
// reachable; build allocates memTimers separately allocated values and arms their timers.
func heapPer(build func() any) float64 {
	before := liveHeap()
	v := build()
	after := liveHeap()
	runtime.KeepAlive(v)
	return (float64(after) - float64(before)) / memTimers
}

// BenchmarkBytesPerTimer reports the live heap that each armed timer adds beyond the
// value it times (B/timer), for 1,000,000 separately allocated connections: with a wheel
// Timer embedded, and with a time.Timer from AfterFunc whose callback captures the
// connection, as a per-connection timeout must. The bare values are measured the same way
// and subtracted. One op builds, measures and drops a whole population.
func BenchmarkBytesPerTimer(b *testing.B) {
	base := func() any {
		conns := make([]*memBase, memTimers)
		for i := range conns {
			conns[i] = &memBase{id: uint64(i)}
		}
		return conns
	}
	b.Run("wheel", func(b *testing.B) {
		b.ReportAllocs()
		var per float64
		for b.Loop() {
			per = heapPer(func() any {
				start := time.Now()
				w := New[*memWheelConn](testTick, start)
				conns := make([]*memWheelConn, memTimers)
				for i := range conns {
					c := &memWheelConn{id: uint64(i)}
					c.timer.Init(c)
					w.Schedule(&c.timer, start.Add(time.Duration(i%6000)*testTick))
					conns[i] = c
				}
				return []any{w, conns}
			}) - heapPer(base)
		}
		b.ReportMetric(per, "B/timer")
	})
	b.Run("time.AfterFunc", func(b *testing.B) {
		b.ReportAllocs()
		var per float64
		for b.Loop() {
			var conns []*memStdConn
			per = heapPer(func() any {
				conns = make([]*memStdConn, memTimers)
				for i := range conns {
					c := &memStdConn{id: uint64(i)}
					c.timer = time.AfterFunc(time.Hour+time.Duration(i%6000)*testTick, func() { c.id++ })
					conns[i] = c
				}
				return conns
			}) - heapPer(base)
			for _, c := range conns {
				c.timer.Stop()
			}
		}
		b.ReportMetric(per, "B/timer")
	})
}
