package loop

import "testing"

// TestUnansweredPings checks the ping count packed in Conn.flags: it counts up, saturates
// at maxUnanswered, resets, and never disturbs flagCongested.
func TestUnansweredPings(t *testing.T) {
	for _, congested := range []connFlags{0, flagCongested} {
		c := &Conn{flags: congested}
		for i := 1; i <= maxUnanswered+2; i++ {
			c.setUnanswered(c.unanswered() + 1)
			if got, want := c.unanswered(), min(i, maxUnanswered); got != want {
				t.Fatalf("after %d pings: unanswered() = %d, want %d", i, got, want)
			}
			if c.flags&flagCongested != congested {
				t.Fatalf("after %d pings: flagCongested changed (flags %08b)", i, c.flags)
			}
		}
		c.setUnanswered(0)
		if c.unanswered() != 0 || c.flags != congested {
			t.Fatalf("after a pong: flags %08b, want %08b", c.flags, congested)
		}
	}
}
