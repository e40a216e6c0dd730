package bench

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A worker process that ends without a report is seen as dead by every look, the ramp's
// and then stop's: stop must not wait out its 30 s timeout because the ramp took the news.
func TestChildWorkerDeathSeenTwice(t *testing.T) {
	// A worker that reads its configuration, then dies.
	exe := filepath.Join(t.TempDir(), "dying-worker")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\nread config\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := startChild(exe, childStart{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.died():
	case <-time.After(10 * time.Second):
		t.Fatal("a worker that exited at once is not seen as dead")
	}
	stopped := make(chan error, 1)
	go func() {
		_, err := c.stop()
		stopped <- err
	}()
	select {
	case err := <-stopped:
		if err == nil {
			t.Fatal("stop of a dead worker returned no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stop of a worker already seen dead is waiting for a report that cannot come")
	}
}
