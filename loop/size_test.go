package loop

import (
	"testing"
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
