package loop

import (
	"math"
	"testing"
	"time"
	"unsafe"
)

// TestConnSize guards the bytes every idle socket costs (DESIGN invariant 2): Conn must
// stay within the 112-byte allocation size class. Grow it only with a measured reason in
// BENCHMARKS.md.
func TestConnSize(t *testing.T) {
	if got := unsafe.Sizeof(Conn{}); got > 112 {
		t.Fatalf("loop.Conn is %d bytes, over the 112-byte size class it is budgeted for", got)
	}
}

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
