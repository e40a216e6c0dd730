package server

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/wsreactor/wsreactor/codec"
	"github.com/wsreactor/wsreactor/fanout"
	"github.com/wsreactor/wsreactor/loop"
)

// Apps selectable with Options.App.
const (
	AppPubSub = "pubsub"
	AppEcho   = "echo"
)

// Options configures a Server. The zero value works: New fills every zero field with the
// default DESIGN.md gives its flag.
type Options struct {
	Listen           string        // WebSocket listener; default ":8080"
	Admin            string        // admin HTTP listener; default "127.0.0.1:9090"
	Loops            int           // event loops; default GOMAXPROCS
	App              string        // AppPubSub (default) or AppEcho
	Heartbeat        time.Duration // ping interval; default 30s
	IdleTimeout      time.Duration // silence before a socket is reaped (4001); default 75s
	HandshakeTimeout time.Duration // time to finish the upgrade; default 5s
	Tick             time.Duration // timing-wheel resolution per loop; default loop.DefaultTick (10ms)
	MaxMessageBytes  int64         // larger messages close with 1009; default 1 MiB
	MaxConnections   int           // over it, upgrades get 503; 0 means no limit
	SendBufferLimit  int64         // outbound bytes queued per socket before it is closed with 4000; default 1 MiB
	ClientRate       float64       // inbound messages per second per socket (burst 2x), over it 4029; 0 means none
	ChannelRate      float64       // pub messages per second per channel per node, over it an error frame; 0 means none
	AuthHS256Secret  string        // when set, upgrades need a valid HS256 JWT
	AllowedOrigins   []string      // browser origins allowed to connect; empty means any
	ReusePort        bool          // SO_REUSEPORT on the listener, for several processes on one port
	DrainTimeout     time.Duration // Shutdown waits this long for sockets to leave; default 30s
	ReconnectHint    time.Duration // reconnectInMs in SERVER_SHUTDOWN; default 2s
	NodeID           string        // this node's name in the fleet; default hostname-random
	AdminToken       string        // when set, /v1/* needs Authorization: Bearer <token>

	Broker       string         // BrokerLocal (default) or BrokerNATS
	NATSURL      string         // with BrokerNATS; default nats://127.0.0.1:4222
	NATSEmbedded bool           // start an in-process NATS server on NATSURL's address
	Routing      fanout.Routing // direct messages: fanout.RoutingDirected (default) or RoutingBroadcast

	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
}

// Brokers selectable with Options.Broker.
const (
	BrokerLocal = "local"
	BrokerNATS  = "nats"
)

// Defaults for Options' zero fields.
const (
	DefaultNATSURL       = "nats://127.0.0.1:4222"
	DefaultReconnectHint = 2 * time.Second
	DefaultListen        = ":8080"
	DefaultAdmin         = "127.0.0.1:9090"
	DefaultDrainTimeout  = 30 * time.Second
)

// withDefaults returns a copy of o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.Admin == "" {
		o.Admin = DefaultAdmin
	}
	if o.Loops == 0 {
		o.Loops = runtime.GOMAXPROCS(0)
	}
	if o.App == "" {
		o.App = AppPubSub
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = loop.DefaultHeartbeat
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = loop.DefaultIdleTimeout
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = loop.DefaultHandshakeTimeout
	}
	if o.MaxMessageBytes == 0 {
		o.MaxMessageBytes = codec.DefaultMaxMessageBytes
	}
	if o.SendBufferLimit == 0 {
		o.SendBufferLimit = loop.DefaultSendBufferLimit
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.ReconnectHint == 0 {
		o.ReconnectHint = DefaultReconnectHint
	}
	if o.NodeID == "" {
		o.NodeID = defaultNodeID()
	}
	if o.Broker == "" {
		o.Broker = BrokerLocal
	}
	if o.NATSURL == "" {
		o.NATSURL = DefaultNATSURL
	}
	if o.Routing == "" {
		o.Routing = fanout.RoutingDirected
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// validate returns every problem with o at once.
func (o Options) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("server: "+format, args...)) }
	if o.App != AppPubSub && o.App != AppEcho {
		bad("app must be %q or %q, got %q", AppPubSub, AppEcho, o.App)
	}
	if o.Broker != BrokerLocal && o.Broker != BrokerNATS {
		bad("broker must be %q or %q, got %q", BrokerLocal, BrokerNATS, o.Broker)
	}
	if o.Routing != fanout.RoutingDirected && o.Routing != fanout.RoutingBroadcast {
		bad("routing must be %q or %q, got %q", fanout.RoutingDirected, fanout.RoutingBroadcast, o.Routing)
	}
	if o.NATSEmbedded && o.Broker != BrokerNATS {
		bad("nats-embedded needs broker %q", BrokerNATS)
	}
	if u, err := url.Parse(o.NATSURL); err != nil || u.Host == "" {
		bad("nats-url %q is not a URL like nats://host:4222", o.NATSURL)
	}
	if !validIdentity(o.NodeID) {
		bad("node-id %q must be 1-128 printable characters", o.NodeID)
	}
	if o.Loops < 0 {
		bad("loops must be positive, got %d", o.Loops)
	}
	for name, d := range map[string]time.Duration{
		"heartbeat": o.Heartbeat, "idle-timeout": o.IdleTimeout,
		"handshake-timeout": o.HandshakeTimeout, "drain-timeout": o.DrainTimeout,
		"reconnect-hint": o.ReconnectHint, "tick": o.Tick,
	} {
		if d < 0 {
			bad("%s must be positive, got %v", name, d)
		}
	}
	if o.Tick > time.Second {
		bad("tick must be at most 1s (close and handshake deadlines fire up to one tick late), got %v", o.Tick)
	}
	if o.IdleTimeout > 0 && o.Heartbeat > 0 && o.IdleTimeout <= o.Heartbeat {
		bad("idle-timeout (%v) must be longer than heartbeat (%v), or every socket is reaped before its first pong", o.IdleTimeout, o.Heartbeat)
	}
	if o.MaxMessageBytes < 0 {
		bad("max-message-bytes must be positive, got %d", o.MaxMessageBytes)
	}
	if o.MaxMessageBytes > codec.MaxMessageLimit {
		bad("max-message-bytes must be at most %d (4 GiB - 1: a message is held whole in memory), got %d", int64(codec.MaxMessageLimit), o.MaxMessageBytes)
	}
	if o.SendBufferLimit < 0 {
		bad("send-buffer-limit must be positive, got %d", o.SendBufferLimit)
	}
	// The loop keeps each socket's queued bytes in 32 bits.
	if o.SendBufferLimit > 1<<31-1 {
		bad("send-buffer-limit must be under 2GiB, got %d", o.SendBufferLimit)
	}
	// Written so NaN fails too (every comparison with it is false), as does +Inf.
	if !(o.ClientRate >= 0 && o.ChannelRate >= 0) || math.IsInf(o.ClientRate, 0) || math.IsInf(o.ChannelRate, 0) {
		bad("client-rate and channel-rate must be finite and not negative, got %v and %v", o.ClientRate, o.ChannelRate)
	}
	if o.MaxConnections < 0 {
		bad("max-connections must not be negative, got %d", o.MaxConnections)
	}
	for _, origin := range o.AllowedOrigins {
		if origin != "*" && !strings.Contains(origin, "://") {
			bad("allowed origin %q must be scheme://host[:port] or *", origin)
		}
	}
	return errors.Join(errs...)
}

// defaultNodeID is the hostname plus a random suffix, so two processes on one host (the
// -reuse-port deployment) never share a name.
func defaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	if len(host) > 100 {
		host = host[:100]
	}
	return host + "-" + randomID()[:6]
}
