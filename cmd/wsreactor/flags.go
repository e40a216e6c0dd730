package main

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wsreactor/wsreactor/fanout"
	"github.com/wsreactor/wsreactor/loop"
	"github.com/wsreactor/wsreactor/server"
)

// sizeValue is a flag.Value for byte sizes: plain bytes or a KiB/MiB/GiB suffix.
type sizeValue struct{ p *int64 }

func (s sizeValue) String() string {
	if s.p == nil {
		return ""
	}
	return formatSize(*s.p)
}

func (s sizeValue) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s.p = n
	return nil
}

// parseSize parses "262144", "256KiB", "2MiB" or "1GiB".
func parseSize(v string) (int64, error) {
	mult := int64(1)
	num := strings.TrimSpace(v)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(num, u.suffix) {
			mult, num = u.mult, strings.TrimSpace(strings.TrimSuffix(num, u.suffix))
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q: want bytes or a KiB/MiB/GiB suffix, e.g. 256KiB", v)
	}
	return n * mult, nil
}

func formatSize(n int64) string {
	switch {
	case n != 0 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n != 0 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n != 0 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}

// listValue is a comma-separated list flag.
type listValue struct{ p *[]string }

func (l listValue) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l listValue) Set(v string) error {
	*l.p = nil
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l.p = append(*l.p, s)
		}
	}
	return nil
}

// parseFlags maps args and the WSR_* environment to Options. Every flag reads
// WSR_<FLAG> (upper case, '-' as '_'); a flag given on the command line wins.
func parseFlags(args []string, getenv func(string) string) (server.Options, error) {
	var o server.Options
	maxMsg := int64(0)
	fs := flag.NewFlagSet("wsreactor", flag.ContinueOnError)
	fs.StringVar(&o.Listen, "listen", server.DefaultListen, "WebSocket listener `address`")
	fs.StringVar(&o.Admin, "admin", server.DefaultAdmin, "admin HTTP `address`: /metrics, /healthz, /readyz, /v1/*, /debug/pprof/")
	fs.IntVar(&o.Loops, "loops", 0, "event loops (0: GOMAXPROCS)")
	fs.StringVar(&o.App, "app", server.AppPubSub, "application: pubsub or echo")
	fs.DurationVar(&o.Heartbeat, "heartbeat", 30*time.Second, "ping interval per socket")
	fs.DurationVar(&o.IdleTimeout, "idle-timeout", 75*time.Second, "a socket silent this long (no frame, no pong) is reaped with 4001")
	fs.DurationVar(&o.HandshakeTimeout, "handshake-timeout", 5*time.Second, "time to finish the HTTP upgrade")
	fs.DurationVar(&o.Tick, "tick", loop.DefaultTick, "timing-wheel resolution: deadlines and pings fire up to this late; coarser costs less idle CPU")
	maxMsg = 1 << 20
	fs.Var(sizeValue{&maxMsg}, "max-message-bytes", "larger messages close with 1009 (bytes, or KiB/MiB/GiB)")
	fs.IntVar(&o.MaxConnections, "max-connections", 0, "over it, upgrades get 503 (0: no limit)")
	sendLimit := int64(1 << 20)
	fs.Var(sizeValue{&sendLimit}, "send-buffer-limit", "outbound bytes queued per socket before it is closed with 4000")
	fs.Float64Var(&o.ClientRate, "client-rate", 0, "inbound messages per second per socket, burst 2x; over it: close 4029 (0: none)")
	fs.Float64Var(&o.ChannelRate, "channel-rate", 0, "pub messages per second per channel per node; over it: error frame (0: none)")
	fs.StringVar(&o.AuthHS256Secret, "auth-hs256-secret", "", "when set, upgrades need a valid HS256 JWT (Authorization: Bearer or ?token=)")
	fs.Var(listValue{&o.AllowedOrigins}, "allowed-origins", "comma list of browser origins allowed to connect (default any)")
	fs.BoolVar(&o.ReusePort, "reuse-port", false, "SO_REUSEPORT, so several processes can share -listen")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM, how long to wait for sockets to leave")
	fs.DurationVar(&o.ReconnectHint, "reconnect-hint", 2*time.Second, "reconnectInMs sent in SERVER_SHUTDOWN (clients add jitter)")
	fs.StringVar(&o.NodeID, "node-id", "", "this node's name in the fleet (default hostname-random)")
	fs.StringVar(&o.AdminToken, "admin-token", "", "when set, /v1/* needs Authorization: Bearer <token>")
	fs.StringVar(&o.Broker, "broker", server.BrokerLocal, "fan-out broker: local (in process) or nats")
	fs.StringVar(&o.NATSURL, "nats-url", server.DefaultNATSURL, "NATS server `URL`, with -broker nats")
	fs.BoolVar(&o.NATSEmbedded, "nats-embedded", false, "start an in-process NATS server on -nats-url's address")
	routing := string(fanout.RoutingDirected)
	fs.StringVar(&routing, "routing", routing, "direct messages: broadcast (every node filters) or directed (only owning nodes)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: wsreactor [flags]\n\nEvery flag also reads WSR_<FLAG> (e.g. WSR_MAX_MESSAGE_BYTES); flags win.\n\n")
		fs.PrintDefaults()
	}

	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	// The environment fills the flags the command line did not set, so a flag wins even
	// over an environment value that would not parse.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErrs []string
	fs.VisitAll(func(f *flag.Flag) {
		key := "WSR_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(key); v != "" && !set[f.Name] {
			if err := f.Value.Set(v); err != nil {
				envErrs = append(envErrs, fmt.Sprintf("%s=%q: %v", key, v, err))
			}
		}
	})
	if len(envErrs) > 0 {
		return o, fmt.Errorf("environment: %s", strings.Join(envErrs, "; "))
	}
	// server.Options reads a zero as "the default", so an explicit 0 would be silently
	// replaced; none of these has a meaning for 0, so it is an error instead.
	var zero []string
	for name, v := range map[string]int64{
		"heartbeat": int64(o.Heartbeat), "idle-timeout": int64(o.IdleTimeout),
		"handshake-timeout": int64(o.HandshakeTimeout), "tick": int64(o.Tick),
		"drain-timeout": int64(o.DrainTimeout), "reconnect-hint": int64(o.ReconnectHint),
		"max-message-bytes": maxMsg, "send-buffer-limit": sendLimit,
	} {
		if v == 0 {
			zero = append(zero, "-"+name)
		}
	}
	if len(zero) > 0 {
		slices.Sort(zero)
		return o, fmt.Errorf("%s must be positive, got 0", strings.Join(zero, ", "))
	}
	o.MaxMessageBytes = maxMsg
	o.SendBufferLimit = sendLimit
	o.Routing = fanout.Routing(routing)
	return o, nil
}
