package loop

import "testing"

// TestGCRA checks the rate limit against the token bucket it stands for: a full bucket of
// 2x rate messages, refilled at rate per second, never above 2x rate.
func TestGCRA(t *testing.T) {
	const rate = 10.0 // burst 20, one message per 100 ms after that
	const ms = int64(1e6)
	var tat int64
	now := 5_000 * ms
	send := func(n int) (allowed int) {
		for range n {
			next, ok := gcra(tat, now, rate)
			if ok {
				tat = next
				allowed++
			}
		}
		return allowed
	}
	if got := send(25); got != 20 {
		t.Fatalf("full bucket: %d of 25 allowed, want the 20 of a 2x burst", got)
	}
	now += 100 * ms // one interval refills one message
	if got := send(3); got != 1 {
		t.Fatalf("after 100 ms: %d of 3 allowed, want 1", got)
	}
	now += 550 * ms // five and a half intervals: five whole messages
	if got := send(10); got != 5 {
		t.Fatalf("after 550 ms more: %d of 10 allowed, want 5", got)
	}
	now += 3_600_000 * ms // an hour idle: the bucket is full again, not fuller
	if got := send(30); got != 20 {
		t.Fatalf("after an hour idle: %d of 30 allowed, want 20", got)
	}
	// Under 0.5 a second, 2x would be less than one message: the burst is one, and the
	// next message passes one interval later.
	for _, r := range []float64{0.4, 0.5, 1e-300} {
		tat = 0
		next, ok := gcra(tat, now, r)
		if !ok {
			t.Fatalf("rate %v refused the first message", r)
		}
		if _, ok := gcra(next, now, r); ok {
			t.Errorf("rate %v allowed a second message at once", r)
		}
		if r >= 1e-3 {
			interval := int64(1e9 / r)
			if _, ok := gcra(next, now+interval, r); !ok {
				t.Errorf("rate %v refused a message one interval (%v ns) later", r, interval)
			}
		}
	}
}
