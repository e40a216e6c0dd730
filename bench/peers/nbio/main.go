// Command nbio is the event-loop reference server for the benchmarks: a WebSocket echo
// server on github.com/lesismal/nbio (the nbhttp engine and its websocket upgrader),
// configured the way nbio recommends for many idle connections, so the swarm can drive it
// exactly like `wsreactor -app echo`.
//
// Behaviour (the same contract as wsreactor -app echo, DESIGN.md "Admin HTTP"):
//
//   - -listen (default :8080) upgrades any path and echoes every text or binary message back
//     unchanged; pings are answered with pongs (the upgrader's default ping handler).
//   - -admin (default 127.0.0.1:9090) serves POST /v1/broadcast {"data": <json>}, which writes
//     data to every socket as one text frame with no envelope (a JSON string's decoded
//     contents, any other JSON value as its raw text) and answers 202; GET /healthz (200);
//     GET /metrics with ws_connections_active in Prometheus text. The admin listener is a
//     plain net/http server: it is not what is being measured.
//
// Configuration choices:
//
//   - IOMod is nbhttp.IOModNonBlocking: every connection, from accept on, lives in nbio's
//     epoll pollers, with no goroutine per connection. The blocking and mixed modes (a
//     goroutine per connection for the first MaxBlockingOnline sockets, which nbio's own
//     1M-connection example uses) are off, and so are the upgrader's BlockingMod* options,
//     which only apply to them.
//   - -pollers defaults to nbio's own choice (NumCPU/4, at least one): pollers only move
//     bytes; OnMessage runs on nbio's handler goroutine pool, serialized per connection.
//   - ReadBufferSize stays at nbio's 64 KiB default: in non-blocking mode it is one buffer
//     per poller, not per connection, so shrinking it saves nothing per idle socket and
//     only costs read calls on large messages. Partial frames are kept in per-connection
//     buffers from nbio's mempool only while incomplete.
//   - ReleaseWebsocketPayload returns each message's buffer to the pool after OnMessage
//     (nbio's 1M example does the same); the echo writes before returning, and a write
//     nbio cannot finish at once is copied into its own send buffer.
//   - KeepaliveTime is 0 on the upgrader: nbio's default (120 s) sets a read deadline that
//     closes a socket that sends nothing for two minutes, and this server sends no pings,
//     so idle benchmark sockets would be reaped. With 0 the upgrade clears the deadline.
//   - MaxWebsocketFramePayloadSize and MessageLengthLimit are 1 MiB (wsreactor's default
//     -max-message-bytes): nbio splits outgoing messages above the former into fragments,
//     and the contract is one frame per broadcast. Compression is off (nbio's default).
//   - MaxLoad stays at nbio's default, 1,048,576 connections: above the one-million target,
//     and the open-file hard limit is the real cap.
//   - CheckOrigin accepts every origin (wsreactor's default with no -allowed-origins).
//   - Broadcast walks a registry of *websocket.Conn under a read lock and calls
//     WriteMessage on each; nbio's Conn.WriteMessage is safe from any goroutine and never
//     blocks (unsent bytes are queued by nbio). nbio has no prepared-message API, so the
//     frame header is encoded per socket.
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

	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/wsreactor/wsreactor/bench/peers/internal/peerkit"
)

// maxMessageBytes matches wsreactor's default -max-message-bytes (1 MiB).
const maxMessageBytes = 1 << 20

// hub is the registry of live connections. Safe for concurrent use.
type hub struct {
	mu     sync.RWMutex
	conns  map[*websocket.Conn]struct{}
	active atomic.Int64
}

func (h *hub) add(c *websocket.Conn) {
	h.mu.Lock()
	h.conns[c] = struct{}{}
	h.mu.Unlock()
	h.active.Add(1)
}

func (h *hub) remove(c *websocket.Conn) {
	h.mu.Lock()
	_, ok := h.conns[c]
	delete(h.conns, c)
	h.mu.Unlock()
	if ok {
		h.active.Add(-1)
	}
}

// broadcast writes data as one text message to every registered connection and reports
// how many writes failed (a failed write means nbio has closed or is closing the socket).
func (h *hub) broadcast(data []byte) (sent, failed int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.conns {
		if err := c.WriteMessage(websocket.TextMessage, data); err != nil {
			failed++
			continue
		}
		sent++
	}
	return sent, failed
}

// newUpgrader returns the upgrader for h: echo in OnMessage, registry in OnOpen/OnClose.
func (h *hub) newUpgrader() *websocket.Upgrader {
	u := websocket.NewUpgrader()
	u.KeepaliveTime = 0
	u.MessageLengthLimit = maxMessageBytes
	u.CheckOrigin = func(*http.Request) bool { return true }
	u.OnOpen(h.add)
	u.OnMessage(func(c *websocket.Conn, mt websocket.MessageType, data []byte) {
		_ = c.WriteMessage(mt, data)
	})
	u.OnClose(func(c *websocket.Conn, _ error) { h.remove(c) })
	return u
}

func main() {
	listen := flag.String("listen", ":8080", "WebSocket listener `address`")
	admin := flag.String("admin", "127.0.0.1:9090", "admin HTTP `address`: /v1/broadcast, /healthz, /metrics")
	pollers := flag.Int("pollers", 0, "nbio poller goroutines (0: nbio's default, NumCPU/4 and at least 1)")
	flag.Parse()

	peerkit.RaiseFileLimit("nbio")

	h := &hub{conns: make(map[*websocket.Conn]struct{})}
	u := h.newUpgrader()
	engine := nbhttp.NewEngine(nbhttp.Config{
		Network: "tcp",
		Addrs:   []string{*listen},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Upgrade answers a bad request with an HTTP error itself.
			_, _ = u.Upgrade(w, r, nil)
		}),
		IOMod:                        nbhttp.IOModNonBlocking,
		NPoller:                      *pollers,
		ReleaseWebsocketPayload:      true,
		MaxWebsocketFramePayloadSize: maxMessageBytes,
	})
	if err := engine.Start(); err != nil {
		log.Fatalf("nbio: start: %v", err)
	}

	adminSrv := &http.Server{Addr: *admin, Handler: peerkit.AdminMux(maxMessageBytes, func(data []byte) (any, error) { h.broadcast(data); return nil, nil }, h.active.Load), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- adminSrv.ListenAndServe() }()
	log.Printf("nbio: websocket on %s, admin on %s", *listen, *admin)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-errc:
		engine.Stop()
		log.Fatalf("nbio: admin: %v", err)
	case <-sig:
	}
	_ = adminSrv.Close()
	engine.Stop()
}
