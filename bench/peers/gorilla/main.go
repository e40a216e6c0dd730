// Command gorilla is the goroutine-per-connection reference server for the benchmarks: a
// WebSocket echo server written the way a typical production github.com/gorilla/websocket
// server is, so the swarm can drive it exactly like `wsreactor -app echo`.
//
// Behaviour (the same contract as wsreactor -app echo, DESIGN.md "Admin HTTP"):
//
//   - -listen (default :8080) upgrades any path and echoes every text or binary message back
//     unchanged; pings are answered with pongs (gorilla's default ping handler).
//   - -admin (default 127.0.0.1:9090) serves POST /v1/broadcast {"data": <json>}, which writes
//     data to every socket as one text frame with no envelope (a JSON string's decoded
//     contents, any other JSON value as its raw text) and answers 202; GET /healthz (200);
//     GET /metrics with ws_connections_active in Prometheus text.
//
// Design, all of it the library's usual idiom:
//
//   - net/http + websocket.Upgrader; one goroutine per connection (the one net/http started
//     for the request) runs the read loop: ReadMessage, then WriteMessage under the
//     connection's write mutex. Gorilla allows one concurrent reader and one concurrent
//     writer, so the mutex serializes the echo against broadcasts.
//   - Buffers: ReadBufferSize and WriteBufferSize are 1024, as in gorilla's own chat example
//     (the library's default when they are zero is 4096, or the HTTP server's buffers).
//     WriteBufferPool is a sync.Pool, which gorilla documents for servers with many mostly
//     idle connections: the write buffer is held only while a message is being written.
//     The read buffer (a bufio.Reader) and the goroutine's stack stay per connection; that
//     is the cost this baseline exists to show.
//   - Broadcast encodes the frame once with websocket.NewPreparedMessage and writes it to
//     every connection while holding the registry's read lock, each write under that
//     connection's mutex with a write deadline, so one stuck client costs at most
//     writeWait rather than the whole broadcast.
//   - CheckOrigin accepts every origin (wsreactor's default with no -allowed-origins); the
//     read limit is 1 MiB (wsreactor's default -max-message-bytes); compression is off.
//   - No server pings and no read deadline: idle sockets stay open until the client leaves,
//     so long idle runs measure memory, not reaping.
//
// The open-file soft limit is raised to the hard limit at start.
package main

import (
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsreactor/wsreactor/bench/peers/internal/peerkit"
)

const (
	// maxMessageBytes matches wsreactor's default -max-message-bytes (1 MiB).
	maxMessageBytes = 1 << 20
	// writeWait bounds one write to one socket, so a client that stopped reading cannot
	// hold a broadcast (or its own echo) forever.
	writeWait = 10 * time.Second
)

// client is one upgraded connection. mu serializes writers: gorilla allows only one
// goroutine in the write methods at a time (WriteControl excepted).
type client struct {
	ws *websocket.Conn
	mu sync.Mutex
}

// writePrepared sends an already encoded message to c; safe for concurrent use.
func (c *client) writePrepared(pm *websocket.PreparedMessage) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(writeWait))
	return c.ws.WritePreparedMessage(pm)
}

// writeMessage sends one message to c; safe for concurrent use.
func (c *client) writeMessage(mt int, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(writeWait))
	return c.ws.WriteMessage(mt, data)
}

// hub is the registry of live connections. Safe for concurrent use.
type hub struct {
	mu      sync.RWMutex
	clients map[*client]struct{}
	active  atomic.Int64
}

func (h *hub) add(c *client) {
	h.mu.Lock()
	h.clients[c] = struct{}{}
	h.mu.Unlock()
	h.active.Add(1)
}

func (h *hub) remove(c *client) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
	h.active.Add(-1)
}

// broadcast writes pm to every registered client and reports how many writes failed; a
// client whose write fails is closed, and its read loop deregisters it.
func (h *hub) broadcast(pm *websocket.PreparedMessage) (sent, failed int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.clients {
		if err := c.writePrepared(pm); err != nil {
			failed++
			_ = c.ws.Close()
			continue
		}
		sent++
	}
	return sent, failed
}

// broadcastData encodes data once as a text message and writes it to every client.
func (h *hub) broadcastData(data []byte) (any, error) {
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, data)
	if err != nil {
		return nil, err
	}
	h.broadcast(pm)
	return nil, nil
}

var upgrader = websocket.Upgrader{
	ReadBufferSize:  1024,
	WriteBufferSize: 1024,
	WriteBufferPool: &sync.Pool{},
	CheckOrigin:     func(*http.Request) bool { return true },
}

// serveWS upgrades r and runs the connection's read loop on the handler's goroutine until
// the client leaves.
func (h *hub) serveWS(w http.ResponseWriter, r *http.Request) {
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has already answered with an HTTP error.
	}
	ws.SetReadLimit(maxMessageBytes)
	c := &client{ws: ws}
	h.add(c)
	defer func() {
		h.remove(c)
		_ = ws.Close()
	}()
	for {
		mt, msg, err := ws.ReadMessage()
		if err != nil {
			return
		}
		if err := c.writeMessage(mt, msg); err != nil {
			return
		}
	}
}

func main() {
	listen := flag.String("listen", ":8080", "WebSocket listener `address`")
	admin := flag.String("admin", "127.0.0.1:9090", "admin HTTP `address`: /v1/broadcast, /healthz, /metrics")
	flag.Parse()

	peerkit.RaiseFileLimit("gorilla")

	h := &hub{clients: make(map[*client]struct{})}
	wsSrv := &http.Server{Addr: *listen, Handler: http.HandlerFunc(h.serveWS), ReadHeaderTimeout: 5 * time.Second}
	adminSrv := &http.Server{Addr: *admin, Handler: peerkit.AdminMux(maxMessageBytes, h.broadcastData, h.active.Load), ReadHeaderTimeout: 5 * time.Second}

	errc := make(chan error, 2)
	go func() { errc <- wsSrv.ListenAndServe() }()
	go func() { errc <- adminSrv.ListenAndServe() }()
	log.Printf("gorilla: websocket on %s, admin on %s", *listen, *admin)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-errc:
		log.Fatalf("gorilla: %v", err)
	case <-sig:
	}
	// Close stops the listeners; hijacked WebSocket connections die with the process.
	_ = wsSrv.Close()
	_ = adminSrv.Close()
}
