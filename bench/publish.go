package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsreactor/wsreactor/codec"
)

// publisher sends broadcast's messages: one implementation per Config.Publish. Used by
// the coordinator's goroutine only, apart from what each documents.
type publisher interface {
	// publish sends one message carrying data; an error counts it as failed.
	publish(data string) error
	// refused returns how many publishes the server refused after accepting the send
	// (a client pub is answered with an error frame, not a status).
	refused() int
	close()
}

// newPublisher returns cfg's publisher, connected when it needs a connection.
func newPublisher(ctx context.Context, cfg Config) (publisher, error) {
	if cfg.Publish == PublishClient {
		return dialClientPublisher(ctx, cfg)
	}
	base := strings.TrimSuffix(cfg.Admin, "/")
	p := &adminPublisher{url: base + "/v1/broadcast", cl: http.Client{Timeout: 10 * time.Second}}
	if cfg.Channel != "" {
		p.url = base + "/v1/publish"
		p.field = `"channel":` + strconv.Quote(cfg.Channel) + `,`
	}
	return p, nil
}

// adminPublisher posts each message to the admin API: /v1/broadcast, or /v1/publish to a
// channel; anything but 202 fails it.
type adminPublisher struct {
	url   string
	field string // the channel member of the JSON body, or ""
	cl    http.Client
}

func (p *adminPublisher) publish(data string) error {
	body := `{` + p.field + `"data":` + strconv.Quote(data) + `}`
	resp, err := p.cl.Post(p.url, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("bench: POST %s: status %d", p.url, resp.StatusCode)
	}
	return nil
}

func (p *adminPublisher) refused() int { return 0 }
func (p *adminPublisher) close()       {}

// clientPublisher publishes as a client of the server: {"op":"pub"} frames to Channel on
// one WebSocket the coordinator opens besides the swarm's (it subscribes to nothing, so
// it is not a receiver). A goroutine reads what the server sends on it: it answers pings
// and counts error frames (a refused pub: rate limited, forbidden); frames are written
// whole, under mu, so its pongs never split a pub.
type clientPublisher struct {
	conn    net.Conn
	channel string
	mu      sync.Mutex
	buf     []byte // frame scratch, under mu
	errors  atomic.Int64
	done    chan struct{} // closed when the reader returns
}

func dialClientPublisher(ctx context.Context, cfg Config) (*clientPublisher, error) {
	conn, br, _, err := ws.Dialer{Timeout: cfg.DialTimeout}.Dial(ctx, cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("bench: publisher connect to %s: %w", cfg.URL, err)
	}
	p := &clientPublisher{conn: conn, channel: strconv.Quote(cfg.Channel), done: make(chan struct{})}
	var r io.Reader = conn
	if br != nil { // bytes the server sent right after its 101 (the welcome)
		r = br
	}
	go p.read(bufio.NewReader(r))
	return p, nil
}

func (p *clientPublisher) publish(data string) error {
	return p.write(codec.OpText, []byte(`{"op":"pub","channel":`+p.channel+`,"data":`+strconv.Quote(data)+`}`))
}

// write sends one masked frame in one write call. Safe for concurrent use.
func (p *clientPublisher) write(op codec.OpCode, payload []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = codec.AppendClientFrame(p.buf[:0], op, true, payload, mask)
	_ = p.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := p.conn.Write(p.buf)
	return err
}

// read runs on its own goroutine until the connection ends.
func (p *clientPublisher) read(r *bufio.Reader) {
	defer close(p.done)
	for {
		h, err := ws.ReadHeader(r)
		if err != nil {
			return
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(r, payload); err != nil {
			return
		}
		switch h.OpCode {
		case ws.OpPing:
			_ = p.write(codec.OpPong, payload)
		case ws.OpClose:
			return
		case ws.OpText:
			if bytes.Contains(payload, []byte(`"type":"error"`)) {
				p.errors.Add(1)
			}
		}
	}
}

func (p *clientPublisher) refused() int { return int(p.errors.Load()) }

// close ends the connection with a close frame and waits for the reader.
func (p *clientPublisher) close() {
	_ = p.write(codec.OpClose, []byte{0x03, 0xe8}) // 1000
	_ = p.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	<-p.done
	_ = p.conn.Close()
}
