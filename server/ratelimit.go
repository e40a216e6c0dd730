package server

import (
	"sync"
	"time"
)

// channelLimiter is -channel-rate: a token bucket per channel, per node, refilled at rate
// per second up to a burst of twice that. Safe for concurrent use; loops call allow.
type channelLimiter struct {
	rate, burst float64

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// sweepAt is the map size past which full (idle) buckets are dropped, so a client cycling
// through channel names cannot grow the map without bound.
const sweepAt = 1 << 14

func newChannelLimiter(rate float64) *channelLimiter {
	// The burst is at least one publish: under 0.5 a second, 2x would never hold a whole
	// token and every publish would be refused.
	return &channelLimiter{rate: rate, burst: max(2*rate, 1), buckets: map[string]*bucket{}}
}

// allow spends one publish on channel; false means over the rate.
func (l *channelLimiter) allow(channel string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[channel]
	if b == nil {
		// At most one sweep per second: a client cycling through names must not make every
		// loop's pub wait on a scan of the whole map.
		if len(l.buckets) >= sweepAt && now.Sub(l.lastSweep) >= time.Second {
			l.lastSweep = now
			l.sweepLocked(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[channel] = b
	}
	b.tokens = min(b.tokens+now.Sub(b.at).Seconds()*l.rate, l.burst)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (l *channelLimiter) sweepLocked(now time.Time) {
	for name, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.buckets, name)
		}
	}
}
