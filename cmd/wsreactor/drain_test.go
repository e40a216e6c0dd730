package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wsreactor/wsreactor/server/servertest"
)

// TestBinaryDrain runs the real binary with 2,000 clients and sends it SIGTERM: every
// client gets SERVER_SHUTDOWN and then close 1001, the closes are spread over the first
// half of -drain-timeout instead of arriving in one wave, /readyz answers 503 and new
// connections are refused meanwhile, and the process exits 0 before -drain-timeout.
func TestBinaryDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary with 2,000 clients")
	}
	const (
		clients      = 2000
		sources      = 20 // 127.0.0.1-127.0.0.20, so no one source address runs out of ports
		drainTimeout = 4 * time.Second
		halfWindow   = drainTimeout / 2
		// slack is what a loaded two-core machine (this test's clients run under -race
		// next to other test binaries) may add to a deadline.
		slack = 1500 * time.Millisecond
	)
	bin := hdBuild(t)
	wsAddr, adminAddr := hdFreeAddr(t), hdFreeAddr(t)
	admin := "http://" + adminAddr

	var logs hdLockedBuffer
	cmd := exec.Command(bin, "-listen", wsAddr, "-admin", adminAddr,
		"-drain-timeout", drainTimeout.String(), "-app", "pubsub")
	cmd.Env = hdEnvWithoutWSR()
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	var waitErr error
	var exitAt time.Time
	go func() {
		waitErr = cmd.Wait()
		exitAt = time.Now()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("wsreactor output:\n%s", logs.String())
		}
	})

	// /healthz answers once the process runs.
	deadline := time.Now().Add(30 * time.Second)
	for hdGetStatus(admin+"/healthz") != http.StatusOK {
		select {
		case <-exited:
			t.Fatalf("wsreactor exited before answering /healthz: %v", waitErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("/healthz did not answer 200 within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Connect the clients from a bounded number of goroutines, spread over source addresses.
	conns := make([]*hdClient, clients)
	var next atomic.Int64
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < clients; i = int(next.Add(1) - 1) {
				src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%sources))}
				c, err := hdConnect(&net.Dialer{LocalAddr: src, Timeout: 10 * time.Second}, wsAddr)
				if err != nil {
					errs <- fmt.Errorf("client %d from %v: %w", i, src.IP, err)
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	deadline = time.Now().Add(15 * time.Second)
	for active := hdMetric(admin, "ws_connections_active"); active != clients; active = hdMetric(admin, "ws_connections_active") {
		if time.Now().After(deadline) {
			t.Fatalf("ws_connections_active = %v, want %d", active, clients)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Every client watches for the drain from its own goroutine.
	type seen struct {
		closeAt time.Time
		err     error
	}
	results := make([]seen, clients)
	firstGoodbye := make(chan struct{})
	var once sync.Once
	var readers sync.WaitGroup
	for i, c := range conns {
		readers.Go(func() {
			at, err := c.watchDrain(30*time.Second, func() { once.Do(func() { close(firstGoodbye) }) })
			results[i] = seen{closeAt: at, err: err}
		})
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	// While the drain runs: not ready, and no new connection is upgraded.
	select {
	case <-firstGoodbye:
	case <-time.After(10 * time.Second):
		t.Fatal("no client got SERVER_SHUTDOWN within 10s of SIGTERM")
	}
	if status := hdGetStatus(admin + "/readyz"); status != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the drain = %d, want 503", status)
	}
	if c, err := hdConnect(&net.Dialer{Timeout: 5 * time.Second}, wsAddr); err == nil {
		c.Close()
		t.Errorf("a new connection was upgraded during the drain")
	}

	select {
	case <-exited:
	case <-time.After(drainTimeout + 10*time.Second):
		t.Fatal("wsreactor did not exit after SIGTERM")
	}
	took := exitAt.Sub(start)
	if waitErr != nil {
		t.Errorf("wsreactor exited with %v, want exit status 0", waitErr)
	}
	if took > drainTimeout+slack {
		t.Errorf("wsreactor exited %v after SIGTERM, want within -drain-timeout %v (+%v)", took, drainTimeout, slack)
	}
	readers.Wait()

	var offsets []time.Duration
	for i, r := range results {
		if r.err != nil {
			t.Errorf("client %d: %v", i, r.err)
			continue
		}
		offsets = append(offsets, r.closeAt.Sub(start))
	}
	if len(offsets) < clients {
		t.Fatalf("%d of %d clients saw SERVER_SHUTDOWN then close 1001", len(offsets), clients)
	}
	slices.Sort(offsets)
	pct := func(p int) time.Duration { return offsets[(len(offsets)-1)*p/100] }
	buckets := map[time.Duration]int{}
	busiest := 0
	for _, d := range offsets {
		b := d.Truncate(10 * time.Millisecond)
		buckets[b]++
		busiest = max(busiest, buckets[b])
	}
	t.Logf("closes after SIGTERM: min %v p10 %v p50 %v p90 %v max %v; busiest 10ms bucket %d; exit after %v",
		offsets[0], pct(10), pct(50), pct(90), offsets[len(offsets)-1], busiest, took)
	// Paced evenly over the first half of -drain-timeout (2 s): uniform would give
	// p90-p10 = 1.6 s and p50 = 1 s.
	if spread := pct(90) - pct(10); spread < halfWindow/4 {
		t.Errorf("p90-p10 of the close times = %v, want at least %v: the closes came in a wave", spread, halfWindow/4)
	}
	if pct(10) > halfWindow/2 {
		t.Errorf("p10 of the close times = %v, want the pacing to start at once", pct(10))
	}
	if last := offsets[len(offsets)-1]; last > halfWindow+slack {
		t.Errorf("last close %v after SIGTERM, want within the first half of -drain-timeout (%v, +%v)", last, halfWindow, slack)
	}
	if busiest > clients/10 {
		t.Errorf("%d of %d closes arrived within one 10ms bucket, want at most %d", busiest, clients, clients/10)
	}
}

// hdBuild builds this package's binary into a temporary directory.
func hdBuild(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "wsreactor")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// hdFreeAddr returns a loopback address with a port that was free a moment ago.
func hdFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// hdEnvWithoutWSR is the test's environment less any WSR_* variable, so the flags given
// are the whole configuration.
func hdEnvWithoutWSR() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WSR_") {
			env = append(env, kv)
		}
	}
	return env
}

// hdLockedBuffer collects the child's output; the exec package writes from its own
// goroutine.
type hdLockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *hdLockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *hdLockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var hdHTTP = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

// hdGetStatus returns the status of GET url, or 0 when there was no answer.
func hdGetStatus(url string) int {
	resp, err := hdHTTP.Get(url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// hdMetric returns one series from admin's /metrics, or -1 when it cannot be read.
func hdMetric(admin, name string) float64 {
	m, err := servertest.Scrape(admin)
	if v, ok := m[name]; err == nil && ok {
		return v
	}
	return -1
}

// hdClient is a minimal WebSocket client: enough of RFC 6455 to see the drain.
type hdClient struct {
	net.Conn
	br *bufio.Reader
}

// hdConnect dials addr with d, upgrades and reads the welcome message.
func hdConnect(d *net.Dialer, addr string) (*hdClient, error) {
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &hdClient{Conn: nc, br: bufio.NewReaderSize(nc, 1024)}
	_ = nc.SetDeadline(time.Now().Add(15 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		nc.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("upgrade response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		nc.Close()
		return nil, fmt.Errorf("upgrade status %s", resp.Status)
	}
	op, p, err := c.readFrame()
	if err != nil || op != 1 || !bytes.Contains(p, []byte(`"type":"welcome"`)) {
		nc.Close()
		return nil, fmt.Errorf("want welcome, got opcode %d %q, %v", op, p, err)
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// readFrame reads one unmasked server frame.
func (c *hdClient) readFrame() (op byte, payload []byte, err error) {
	var h [8]byte
	if _, err := io.ReadFull(c.br, h[:2]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 {
		return 0, nil, errors.New("masked server frame")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(c.br, h[:2]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(h[:2]))
	case 127:
		if _, err := io.ReadFull(c.br, h[:8]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(h[:8])
	}
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(c.br, payload)
	return h[0] & 0x0f, payload, err
}

// send writes one masked client frame.
func (c *hdClient) send(op byte, payload []byte) error {
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	frame := []byte{0x80 | op, 0x80 | byte(len(payload))} // control frames only: < 126 bytes
	frame = append(frame, mask[:]...)
	for i, b := range payload {
		frame = append(frame, b^mask[i%4])
	}
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Write(frame)
	return err
}

// watchDrain waits for DESIGN.md's drain on c: SERVER_SHUTDOWN with reconnectInMs (the
// default 2 s hint), then close 1001, which it answers before waiting for the end of the
// TCP connection. It returns when the close frame arrived. first runs on SERVER_SHUTDOWN.
func (c *hdClient) watchDrain(within time.Duration, first func()) (time.Time, error) {
	_ = c.SetReadDeadline(time.Now().Add(within))
	var gotShutdown bool
	for {
		op, p, err := c.readFrame()
		if err != nil {
			return time.Time{}, fmt.Errorf("shutdown seen %v: %w", gotShutdown, err)
		}
		switch op {
		case 9: // ping
			if err := c.send(10, p); err != nil {
				return time.Time{}, err
			}
		case 1: // text
			var m struct {
				Type          string `json:"type"`
				ReconnectInMs *int64 `json:"reconnectInMs"`
			}
			if err := json.Unmarshal(p, &m); err != nil || m.Type != "SERVER_SHUTDOWN" || gotShutdown {
				return time.Time{}, fmt.Errorf("unexpected message %q", p)
			}
			if m.ReconnectInMs == nil || *m.ReconnectInMs != 2000 {
				return time.Time{}, fmt.Errorf("SERVER_SHUTDOWN %q, want reconnectInMs 2000 (the default -reconnect-hint)", p)
			}
			gotShutdown = true
			first()
		case 8: // close
			at := time.Now()
			if !gotShutdown {
				return at, fmt.Errorf("close frame %x before SERVER_SHUTDOWN", p)
			}
			if len(p) < 2 || binary.BigEndian.Uint16(p) != 1001 {
				return at, fmt.Errorf("close frame %x, want code 1001", p)
			}
			if err := c.send(8, p[:2]); err != nil {
				return at, fmt.Errorf("close reply: %w", err)
			}
			if _, err := c.br.ReadByte(); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
				return at, fmt.Errorf("after the close exchange: %v, want EOF", err)
			}
			return at, nil
		default:
			return time.Time{}, fmt.Errorf("unexpected opcode %d", op)
		}
	}
}

// TestBinarySecondSignal checks that a second SIGTERM during a long drain ends the
// process at once (the default action of the signal), for an operator who cannot wait.
func TestBinarySecondSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const clients = 20
	bin := hdBuild(t)
	wsAddr, adminAddr := hdFreeAddr(t), hdFreeAddr(t)
	admin := "http://" + adminAddr
	// A minute's drain paces 20 closes 1.5 s apart: far longer than this test waits.
	cmd := exec.Command(bin, "-listen", wsAddr, "-admin", adminAddr, "-drain-timeout", "60s")
	cmd.Env = hdEnvWithoutWSR()
	var logs hdLockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("wsreactor output:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(30 * time.Second); hdGetStatus(admin+"/healthz") != http.StatusOK; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("/healthz did not answer 200 within 30s")
		}
	}
	for i := range clients {
		c, err := hdConnect(&net.Dialer{Timeout: 10 * time.Second}, wsAddr)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); hdGetStatus(admin+"/readyz") != http.StatusServiceUnavailable; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not turn 503 within 10s of SIGTERM")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
			t.Errorf("exit after the second SIGTERM: %v, want killed by SIGTERM", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10 s after a second SIGTERM, in a drain of 60 s")
	}
}
