// Command idlehold opens N idle WebSocket connections to a server and holds them,
// answering pings, so the server's memory per idle connection can be measured from
// outside. It is a measuring tool for scripts/idle-mem.sh until the swarm (bench/) exists;
// it uses a goroutine per socket because it is the client, not the thing measured.
//
//	idlehold -url ws://127.0.0.1:8080/ -conns 19000 -source 127.0.0.2-127.0.0.40 -hold 60s
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsreactor/wsreactor/codec"
)

func main() {
	target := flag.String("url", "ws://127.0.0.1:8080/", "server URL")
	conns := flag.Int("conns", 1000, "connections to open")
	source := flag.String("source", "127.0.0.1", "source address range a.b.c.X-a.b.c.Y (spreads ephemeral ports)")
	hold := flag.Duration("hold", time.Minute, "how long to hold the connections after they are all open")
	parallel := flag.Int("parallel", 200, "handshakes in flight")
	flag.Parse()

	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	u, err := url.Parse(*target)
	if err != nil {
		fatal(err)
	}
	srcs, err := parseRange(*source)
	if err != nil {
		fatal(err)
	}
	var (
		open, failed, closed atomic.Int64
		wg                   sync.WaitGroup
		sem                  = make(chan struct{}, *parallel)
		firstErr             atomic.Value
	)
	start := time.Now()
	for i := 0; i < *conns; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := dial(u, srcs[i%len(srcs)])
			<-sem
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			open.Add(1)
			serve(c)
			closed.Add(1)
		}(i)
	}
	// Wait for the ramp (not for the connections, which live until the process ends).
	for len(sem) > 0 || open.Load()+failed.Load() < int64(*conns) {
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Printf("open=%d failed=%d ramp=%s\n", open.Load(), failed.Load(), time.Since(start).Round(time.Millisecond))
	if e := firstErr.Load(); e != nil {
		fmt.Printf("first error: %v\n", e)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-time.After(*hold):
	case <-sig:
	}
	fmt.Printf("held: open=%d closed_by_server=%d\n", open.Load()-closed.Load(), closed.Load())
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "idlehold:", err)
	os.Exit(1)
}

// parseRange expands "127.0.0.2-127.0.0.40" (or one address) into addresses.
func parseRange(s string) ([]net.IP, error) {
	lo, hi, found := strings.Cut(s, "-")
	a := net.ParseIP(lo).To4()
	if a == nil {
		return nil, fmt.Errorf("bad source %q", s)
	}
	if !found {
		return []net.IP{a}, nil
	}
	b := net.ParseIP(hi).To4()
	if b == nil || !bytes.Equal(a[:3], b[:3]) || b[3] < a[3] {
		return nil, fmt.Errorf("bad source range %q: want a.b.c.X-a.b.c.Y", s)
	}
	var out []net.IP
	for x := int(a[3]); x <= int(b[3]); x++ {
		out = append(out, net.IPv4(a[0], a[1], a[2], byte(x)).To4())
	}
	return out, nil
}

func dial(u *url.URL, src net.IP) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", u.Host)
	if err != nil {
		return nil, err
	}
	path := u.RequestURI()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	head := make([]byte, 0, 256)
	var b [1]byte
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if _, err := c.Read(b[:]); err != nil {
			c.Close()
			return nil, fmt.Errorf("reading 101: %w", err)
		}
		head = append(head, b[0])
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 101")) {
		c.Close()
		return nil, fmt.Errorf("upgrade refused: %q", strings.SplitN(string(head), "\r\n", 2)[0])
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

// serve reads frames until the connection ends, answering pings with masked pongs.
func serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 256)
	var hdr [14]byte
	for {
		if _, err := io.ReadFull(r, hdr[:2]); err != nil {
			return
		}
		op := codec.OpCode(hdr[0] & 0x0F)
		n := int64(hdr[1] & 0x7F)
		switch n {
		case 126:
			if _, err := io.ReadFull(r, hdr[2:4]); err != nil {
				return
			}
			n = int64(binary.BigEndian.Uint16(hdr[2:4]))
		case 127:
			if _, err := io.ReadFull(r, hdr[2:10]); err != nil {
				return
			}
			n = int64(binary.BigEndian.Uint64(hdr[2:10]))
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			return
		}
		switch op {
		case codec.OpPing:
			frame := codec.AppendClientFrame(nil, codec.OpPong, true, payload, [4]byte{1, 2, 3, 4})
			if _, err := c.Write(frame); err != nil {
				return
			}
		case codec.OpClose:
			return
		}
	}
}
