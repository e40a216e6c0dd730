package loop

import (
	"math"
	"testing"
	"time"
)

// TestExpirySeconds checks how ExpireAt keeps a deadline in 32 bits: rounded up to whole
// Unix seconds (never early), past times still expired, and the unrepresentable far future
// as never.
func TestExpirySeconds(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want uint32
	}{
		{time.Time{}, 0},
		{time.Unix(1_800_000_000, 0), 1_800_000_000},
		{time.Unix(1_800_000_000, 1), 1_800_000_001},
		{time.Unix(1_800_000_000, 999_999_999), 1_800_000_001},
		{time.Unix(0, 0), 1},
		{time.Unix(-86400, 5), 1},
		{time.Unix(math.MaxUint32, 0), math.MaxUint32},
		{time.Unix(math.MaxUint32, 1), 0},
		{time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), 0},
	} {
		if got := expirySeconds(tc.t); got != tc.want {
			t.Errorf("expirySeconds(%v) = %d, want %d", tc.t, got, tc.want)
		}
	}
}

// TestUntilExpiry checks the remaining time the heartbeat compares and arms with: read on
// the wall clock from the now it is given, so a later now (or a wall clock stepped
// forward) leaves less, and a now past the expiry leaves none.
func TestUntilExpiry(t *testing.T) {
	now := time.Now() // with a monotonic reading, as the loop's now has
	c := &Conn{expires: expirySeconds(now.Add(10 * time.Second))}
	if left := c.untilExpiry(now); left <= 9*time.Second || left > 11*time.Second {
		t.Fatalf("untilExpiry 10 s ahead = %v, want (9 s, 11 s]", left)
	}
	if left := c.untilExpiry(now.Add(20 * time.Second)); left > -9*time.Second {
		t.Fatalf("untilExpiry 10 s after the expiry = %v, want about -10 s", left)
	}
	c.expires = expirySeconds(now.Add(-time.Second))
	if left := c.untilExpiry(now); left > 0 {
		t.Fatalf("untilExpiry of a past expiry = %v, want at most 0", left)
	}
}
