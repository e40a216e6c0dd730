package bench

import (
	"testing"
	"time"
)

// The failure count saturates: after hundreds of failed reconnects in a row the delay
// stays drawn from [0, BackoffMax], and does not fall back to the base.
func TestBackoffSaturates(t *testing.T) {
	w := &Worker{cfg: Config{BackoffBase: 100 * time.Millisecond, BackoffMax: 10 * time.Second}}
	c := &conn{}
	for range 300 {
		c.failedAgain()
	}
	if c.tries != 255 {
		t.Fatalf("tries = %d after 300 failures, want 255", c.tries)
	}
	// Uniform over [0, 10 s]: 200 draws all under the 100 ms base would mean the ceiling
	// fell back to it (probability 0.01^200).
	longest := time.Duration(0)
	for range 200 {
		d := w.backoff(c)
		if d < 0 || d > w.cfg.BackoffMax {
			t.Fatalf("backoff %v outside [0, %v]", d, w.cfg.BackoffMax)
		}
		longest = max(longest, d)
	}
	if longest <= w.cfg.BackoffBase {
		t.Errorf("longest of 200 delays %v, want the ceiling at BackoffMax, not the base", longest)
	}
}
