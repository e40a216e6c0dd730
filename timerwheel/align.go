package timerwheel

import "time"

// UntilBoundary returns how long after now the next whole multiple of tick since the Unix
// epoch comes, in (0, tick]. Owners that advance their wheels from a ticker use it as the
// ticker's next delay, so that every process on a host ticks at the same instants: work
// that timers release on each tick (pings, above all) then leaves all processes at once,
// and each peer wakes once per tick to take it all, rather than once per process. With
// the ~120 processes a million sockets take under a low descriptor limit, unaligned ticks
// scatter the same work over many more wake-ups. A process alone loses nothing by it.
func UntilBoundary(now time.Time, tick time.Duration) time.Duration {
	if tick <= 0 {
		return tick
	}
	return tick - time.Duration(now.UnixNano()%int64(tick))
}
