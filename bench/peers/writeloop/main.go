// Command writeloop is the broadcast floor for the benchmarks: the least a server can do to
// put one message on every socket, which is one write(2) per socket. It holds WebSocket
// connections and, on POST /v1/broadcast, writes a pre-encoded frame to each raw
// descriptor in a plain loop; nothing else happens per socket, so the broadcast's cost is
// the syscalls' cost. wsreactor's broadcast cost, minus this, is what its loops, queues and
// bookkeeping add.
//
// It speaks just enough WebSocket for the swarm to connect and parse what it receives:
//
//   - -listen (default :8080): any GET with a Sec-WebSocket-Key gets a minimal 101 with the
//     RFC 6455 section 4.2.2 Sec-WebSocket-Accept (no extensions, no subprotocol). Other
//     requests get 400. After the upgrade the connection's goroutine reads and discards
//     everything (client frames, pongs, close) until the client leaves: there is no echo,
//     no ping, no close handshake.
//   - -admin (default 127.0.0.1:9090): POST /v1/broadcast {"data": <json>} encodes data (a
//     JSON string's decoded contents, any other JSON value as its raw text) once as an
//     unmasked, unfragmented text frame and writes it with one unix.Write per descriptor,
//     then answers 202 with a JSON count of full, short and failed writes. A short write
//     (the socket's send buffer was full) is not retried: the stream is then corrupt for
//     that client, and the count says so. GET /healthz (200); GET /metrics with
//     ws_connections_active.
//
// Descriptors are taken once, after the upgrade, with syscall.RawConn.Control, and used
// outside Go's poller. That is safe because a connection is deregistered (under the
// registry's write lock) before it is closed, and the broadcast loop holds the read lock:
// a descriptor number in the registry is never closed or reused while it is written to.
// Broadcasts are serialized so two frames never interleave on one socket.
//
// Accepting and holding use a goroutine per connection with a 1 KiB read buffer; this
// server is a floor for broadcast CPU, not for memory. The open-file soft limit is raised
// to the hard limit at start.
package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsreactor/wsreactor/bench/peers/internal/peerkit"
)

const (
	// maxMessageBytes matches wsreactor's default -max-message-bytes (1 MiB).
	maxMessageBytes = 1 << 20
	// handshakeTimeout matches wsreactor's default -handshake-timeout.
	handshakeTimeout = 5 * time.Second
	// websocketGUID is the RFC 6455 section 1.3 constant appended to the client's key.
	websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
)

// registry maps live, upgraded connections to their descriptors. Safe for concurrent use.
type registry struct {
	mu  sync.RWMutex
	fds map[net.Conn]int
	// bcast serializes broadcasts, so two frames never interleave on one socket.
	bcast sync.Mutex
}

func (r *registry) add(c net.Conn, fd int) {
	r.mu.Lock()
	r.fds[c] = fd
	r.mu.Unlock()
}

// remove deregisters c; it must run before c is closed (see the package comment).
func (r *registry) remove(c net.Conn) {
	r.mu.Lock()
	delete(r.fds, c)
	r.mu.Unlock()
}

func (r *registry) len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.fds)
}

// writeResult counts a broadcast's writes.
type writeResult struct {
	Full   int `json:"full"`
	Short  int `json:"short"`
	Failed int `json:"failed"`
	Nanos  int `json:"ns"`
}

// broadcast writes frame to every registered descriptor with one write(2) each.
func (r *registry) broadcast(frame []byte) writeResult {
	r.bcast.Lock()
	defer r.bcast.Unlock()
	r.mu.RLock()
	defer r.mu.RUnlock()
	var res writeResult
	start := time.Now()
	for _, fd := range r.fds {
		n, err := unix.Write(fd, frame)
		switch {
		case err != nil:
			res.Failed++
		case n < len(frame):
			res.Short++
		default:
			res.Full++
		}
	}
	res.Nanos = int(time.Since(start))
	return res
}

// textFrame encodes payload as one unmasked, final text frame (RFC 6455 section 5.2).
func textFrame(payload []byte) []byte {
	n := len(payload)
	var hdr []byte
	switch {
	case n < 126:
		hdr = []byte{0x81, byte(n)}
	case n <= 0xFFFF:
		hdr = []byte{0x81, 126, 0, 0}
		binary.BigEndian.PutUint16(hdr[2:], uint16(n))
	default:
		hdr = make([]byte, 10)
		hdr[0], hdr[1] = 0x81, 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
	}
	return append(hdr, payload...)
}

// acceptKey is Sec-WebSocket-Accept for key (RFC 6455 section 4.2.2, step 5.4).
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// upgrade reads the request head from br and answers it: 101 and nil for a WebSocket
// upgrade, 400 and an error for anything else.
func upgrade(c net.Conn, br *bufio.Reader) error {
	req, err := http.ReadRequest(br)
	if err != nil {
		return err
	}
	key := strings.TrimSpace(req.Header.Get("Sec-WebSocket-Key"))
	if req.Method != http.MethodGet || key == "" ||
		!strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
		_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return errors.New("not a websocket upgrade")
	}
	_, err = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\n"+
		"Upgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: "+acceptKey(key)+"\r\n\r\n")
	return err
}

// serve upgrades c, registers its descriptor and discards its input until it leaves.
func (r *registry) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(handshakeTimeout))
	br := bufio.NewReaderSize(c, 1024)
	if err := upgrade(c, br); err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return
	}
	fd := -1
	if err := rc.Control(func(s uintptr) { fd = int(s) }); err != nil {
		return
	}
	r.add(c, fd)
	// Deregister before the deferred Close, so no broadcast can be writing to fd.
	defer r.remove(c)
	// Discard through br's own 1 KiB buffer until the client leaves (io.Copy to
	// io.Discard would pin an 8 KiB pooled buffer per blocked reader).
	for {
		if _, err := br.Discard(br.Size()); err != nil {
			return
		}
	}
}

func main() {
	listen := flag.String("listen", ":8080", "WebSocket listener `address`")
	admin := flag.String("admin", "127.0.0.1:9090", "admin HTTP `address`: /v1/broadcast, /healthz, /metrics")
	flag.Parse()

	peerkit.RaiseFileLimit("writeloop")

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("writeloop: %v", err)
	}
	r := &registry{fds: make(map[net.Conn]int)}
	adminSrv := &http.Server{Addr: *admin, Handler: peerkit.AdminMux(maxMessageBytes, func(data []byte) (any, error) { return r.broadcast(textFrame(data)), nil }, func() int64 { return int64(r.len()) }), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- adminSrv.ListenAndServe() }()
	go func() {
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				// EMFILE and friends: back off like net/http does and keep serving.
				log.Printf("writeloop: accept: %v", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			go r.serve(c)
		}
	}()
	log.Printf("writeloop: websocket on %s, admin on %s", ln.Addr(), *admin)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-errc:
		log.Fatalf("writeloop: %v", err)
	case <-sig:
	}
	_ = ln.Close()
	_ = adminSrv.Close()
}
