package loop

import (
	"errors"
	"fmt"
	"time"

	"github.com/wsreactor/wsreactor/codec"
)

// Config is what a Handler needs. The server fills it from its Options; zero fields take
// the defaults below (DESIGN.md's flag defaults).
type Config struct {
	HandshakeTimeout time.Duration // finish the upgrade within this; default 5s
	Heartbeat        time.Duration // ping interval per socket; default 30s
	IdleTimeout      time.Duration // silent this long: reaped with 4001; default 75s
	CloseTimeout     time.Duration // wait for the peer's close reply; default 1s
	Tick             time.Duration // timing-wheel resolution; default 10ms
	MaxMessageBytes  int64         // larger messages close with 1009; default 1 MiB
	MaxHeaderBytes   int           // larger request heads get 431; default 8 KiB
	// SendBufferLimit bounds the outbound bytes gnet may hold for one socket; over it the
	// socket is closed with 4000 (a slow consumer). Default 1 MiB; negative means none.
	SendBufferLimit int
	// ClientRate is the inbound messages (data frames and pings) per second a socket may
	// send, with a burst of twice that (at least one message); over it the socket is
	// closed with 4029. 0: no limit.
	ClientRate float64
	// MaxConns bounds the connections open at once (upgrades in progress included); over
	// it an upgrade the App accepted is refused with ErrCapacity. 0: no limit.
	MaxConns int64

	// App handles upgraded connections. Required.
	App App
	// Observer receives events for metrics; nil means none.
	Observer Observer
}

// Defaults for Config's zero fields.
const (
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultHeartbeat        = 30 * time.Second
	DefaultIdleTimeout      = 75 * time.Second
	// DefaultCloseTimeout bounds how long a server-initiated close waits for the peer's
	// close frame: long enough for a round trip on a slow mobile link, short enough that a
	// hostile peer cannot hold the descriptor.
	DefaultCloseTimeout = time.Second
	// DefaultTick is the wheel resolution: deadlines fire at most this late. 10 ms keeps a
	// 30 s heartbeat and a 5 s handshake deadline exact to the eye while costing each loop
	// only 100 wake-ups a second.
	DefaultTick = 10 * time.Millisecond
	// DefaultSendBufferLimit is the usual buffered-amount cap of mature gateways: a
	// second or more of traffic for a healthy client, and a bounded loss for a stuck one.
	DefaultSendBufferLimit = 1 << 20
)

func (c *Config) fill() {
	setDefault(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	setDefault(&c.Heartbeat, DefaultHeartbeat)
	setDefault(&c.IdleTimeout, DefaultIdleTimeout)
	setDefault(&c.CloseTimeout, DefaultCloseTimeout)
	setDefault(&c.Tick, DefaultTick)
	setDefault(&c.MaxMessageBytes, codec.DefaultMaxMessageBytes)
	setDefault(&c.MaxHeaderBytes, codec.DefaultMaxHeaderBytes)
	setDefault(&c.SendBufferLimit, DefaultSendBufferLimit)
	if c.Observer == nil {
		c.Observer = NopObserver{}
	}
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.App == nil {
		errs = append(errs, errors.New("loop: Config.App is required"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"HandshakeTimeout", c.HandshakeTimeout}, {"Heartbeat", c.Heartbeat},
		{"IdleTimeout", c.IdleTimeout}, {"CloseTimeout", c.CloseTimeout}, {"Tick", c.Tick},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("loop: %s must not be negative, got %v", d.name, d.v))
		}
	}
	if c.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("loop: MaxConns must not be negative, got %d", c.MaxConns))
	}
	if c.ClientRate < 0 {
		errs = append(errs, fmt.Errorf("loop: ClientRate must not be negative, got %v", c.ClientRate))
	}
	if c.MaxMessageBytes < 0 || c.MaxMessageBytes > codec.MaxMessageLimit {
		errs = append(errs, fmt.Errorf("loop: MaxMessageBytes must be between 0 and %d, got %d", int64(codec.MaxMessageLimit), c.MaxMessageBytes))
	}
	return errors.Join(errs...)
}
