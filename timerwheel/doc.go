// Package timerwheel is a hierarchical timing wheel: a set of timers, one per socket, that
// an event loop arms, moves and disarms in O(1) without allocating, and fires by advancing
// the wheel's time itself.
//
// # Why a wheel
//
// A WebSocket event loop holds up to a million sockets, each with one pending deadline
// (handshake 5 s, next ping 30 s, idle 75 s, token expiry hours or days away) that moves
// often and rarely fires. A heap (the runtime's time.Timer) pays O(log n) per move, a
// lock, and an allocation per timer; a flat wheel of one-tick slots is O(1) but must either
// be as long as the farthest deadline or revisit far timers every lap. A hierarchical wheel
// has both: level 0 holds 256 slots of one tick each, and each of the ten levels above holds
// 64 slots, each spanning 64 times a slot of the level below, so together they span every
// int64 tick. A timer sits in the coarsest level that separates its tick from the current
// one; as time reaches a coarse slot, its timers cascade to finer levels, each at most once
// per level. Schedule and Stop are O(1) whatever the distance, and Advance skips empty
// stretches using one occupancy bitmap per level, so advancing by hours costs no more than
// the timers it fires or cascades.
//
// # Ownership
//
// A Wheel and the Timers armed in it are not safe for concurrent use. Each is owned by one
// goroutine, typically a gnet event loop, which makes every call: Schedule, Stop, Advance,
// and the Timer methods. The wheel starts no goroutine, takes no lock and never reads the
// clock: the owner passes the time to New and Advance, usually from a periodic tick
// posted to the loop. Next tells the owner when the next Advance can have work, so an
// owner with nothing due soon can skip ticks instead of waking for them. Take every time passed to one wheel from the same clock: all from
// time.Now (with monotonic readings) or derived from it by Add, or all without. A Timer
// is intrusive: embed it in the value it times (a connection) and Init it with that
// value, which Advance then passes to fire.
//
// # Timing and order
//
// Time is counted in whole ticks since the start given to New. A deadline at is rounded
// up to the next tick boundary, and the timer fires during the first Advance whose now is
// at or past that boundary: never before at, and at most one tick after it (plus however
// late the owner calls Advance). A deadline at or before the wheel's current time (Now)
// is due at once and fires on the next Advance, even Advance(w.Now()).
//
// An Advance that covers many ticks processes them in order: timers fire in order of
// their rounded deadline, and timers with the same rounded deadline fire in the order they
// were last scheduled. Each arming fires at most once, and a timer is disarmed before its
// fire call, so fire may re-arm it (a periodic timer) or Stop or Schedule any other timer:
// a stopped timer does not fire, even if it was due in the same tick, and a timer scheduled
// for at or before the Advance's now fires later in the same Advance, never before the
// timers already due in the tick being processed. Advance with a now before Now is a no-op.
//
// # Memory
//
// A Timer is 32 bytes when its value is a pointer (two links, the exact deadline as
// nanoseconds since the wheel's start, the value); a million armed timers cost 32 MB on top
// of the values they time, against about 136 bytes each for time.AfterFunc timers
// (BENCH.txt). A Wheel holds 897 list sentinels, 28 KiB for a pointer value, however many
// timers it holds.
package timerwheel
