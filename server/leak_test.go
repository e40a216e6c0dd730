package server_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/server"
	"github.com/wsreactor/wsreactor/server/servertest"
)

// churnEnd is how a churn cycle ends its connection.
type churnEnd int

const (
	endClean     churnEnd = iota // close handshake, then wait for the server's EOF
	endAbrupt                    // close the TCP connection without a close frame
	endReset                     // SO_LINGER 0: the server sees a reset
	endMidFrame                  // half a frame, then close
	endHandshake                 // close before finishing the upgrade request
	numChurnEnds
)

// TestConnectionChurnLeaks runs 10,000 connect/close cycles, ending them every way a
// client can, then checks that the server holds nothing: no active connections, no extra
// goroutines, and every opened connection counted as closed.
func TestConnectionChurnLeaks(t *testing.T) {
	cycles := 10000
	if testing.Short() {
		cycles = 3000
	}
	const workers = 8
	ts := servertest.Start(t, server.Options{})
	addr := ts.Addr
	request := []byte(upgradeRequest(addr))
	accept := []byte(expectedAccept(testKey))
	closeFrame := clientFrame(codec.OpClose, true, closePayload(codec.CloseNormal, ""))
	halfFrame := clientFrame(codec.OpBinary, true, make([]byte, 1000))[:500]

	// Warm up (gnet's worker pool, the admin server) before the baseline.
	for range 3 {
		healthyEcho(t, ts)
	}
	ts.WaitMetric(t, "ws_connections_active", 0)
	baseline := stableGoroutines()

	var upgraded atomic.Int64
	cycle := func(i int, buf []byte) error {
		end := churnEnd(i % int(numChurnEnds))
		nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			return fmt.Errorf("dial: %w", err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
		if end == endHandshake {
			_, err := nc.Write(request[:len(request)/2])
			return err
		}
		wire := request
		if end == endClean {
			wire = append(append(buf[:0], request...), closeFrame...) // pipelined close
		}
		if _, err := nc.Write(wire); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		// Read the 101, and for a clean close the echoed close frame (4 bytes) behind it.
		extra := 0
		if end == endClean {
			extra = 4
		}
		resp := buf[:0]
		for {
			if i := bytes.Index(resp, []byte("\r\n\r\n")); i >= 0 && len(resp) >= i+4+extra {
				break
			}
			n, err := nc.Read(resp[len(resp):cap(resp)])
			resp = resp[:len(resp)+n]
			if err != nil {
				return fmt.Errorf("read response: %w (got %q)", err, resp)
			}
		}
		if !bytes.HasPrefix(resp, []byte("HTTP/1.1 101 ")) || !bytes.Contains(resp, accept) {
			return fmt.Errorf("not a 101: %q", resp)
		}
		upgraded.Add(1)
		switch end {
		case endClean:
			if !bytes.HasSuffix(resp, []byte{0x88, 0x02, 0x03, 0xe8}) {
				return fmt.Errorf("no close 1000 echo after the 101: %q", resp)
			}
			if n, err := nc.Read(buf[:1]); n != 0 || !errors.Is(err, io.EOF) {
				return fmt.Errorf("after the close echo: %d bytes, %v; want EOF", n, err)
			}
		case endReset:
			_ = nc.(*net.TCPConn).SetLinger(0)
		case endMidFrame:
			_, _ = nc.Write(halfFrame)
		}
		return nil
	}

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	var next atomic.Int64
	for range workers {
		wg.Go(func() {
			buf := make([]byte, 0, 512)
			for {
				i := int(next.Add(1)) - 1
				if i >= cycles {
					return
				}
				if err := cycle(i, buf); err != nil {
					errs <- fmt.Errorf("cycle %d (end %d): %w", i, i%int(numChurnEnds), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d cycles in %v", cycles, time.Since(start))

	ts.WaitMetric(t, "ws_connections_active", 0)
	ts.WaitMetric(t, "ws_send_buffer_bytes", 0)
	// Every upgraded cycle plus the warm-up clients, each counted once opened and once
	// closed.
	want := float64(upgraded.Load() + 3)
	var opened, closed float64
	eventually(t, 5*time.Second, func() bool {
		m := ts.Metrics(t)
		opened, closed = m["ws_connections_opened_total"], m["ws_connections_closed_total"]
		return opened == want && closed == want
	}, func() string {
		return fmt.Sprintf("ws_connections_opened_total = %v, ws_connections_closed_total = %v, want both %v", opened, closed, want)
	})
	const delta = 5
	var now int
	eventually(t, 10*time.Second, func() bool {
		now = runtime.NumGoroutine()
		return now <= baseline+delta
	}, func() string {
		buf := make([]byte, 1<<20)
		return fmt.Sprintf("%d goroutines, baseline %d (+%d allowed)\n%s", now, baseline, delta, buf[:runtime.Stack(buf, true)])
	})
}

// stableGoroutines returns the goroutine count once it stops changing for a moment, so the
// baseline does not include goroutines that are on their way out.
func stableGoroutines() int {
	n := runtime.NumGoroutine()
	for i := 0; i < 50; i++ {
		time.Sleep(20 * time.Millisecond) // sampling interval, not a wait for a condition
		m := runtime.NumGoroutine()
		if m == n {
			return n
		}
		n = m
	}
	return n
}
