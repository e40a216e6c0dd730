package bench

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strings"
	"time"
)

// Scenarios the swarm runs.
const (
	ScenarioConnect   = "connect"   // ramp to Conns at Rate; connect latency and failures
	ScenarioIdle      = "idle"      // hold Conns for Duration, answering pings
	ScenarioEcho      = "echo"      // closed loop (Rate 0) or open loop at Rate msgs/s; RTT
	ScenarioBroadcast = "broadcast" // publish Messages (admin API or a client pub); arrival latency
	ScenarioChurn     = "churn"     // close and reopen Rate sockets per second for Duration
	ScenarioReconnect = "reconnect" // survive a drain or kill; reconnect with backoff + jitter
)

// How broadcast publishes (Config.Publish).
const (
	PublishAdmin  = "admin"  // POST /v1/broadcast, or /v1/publish with a Channel
	PublishClient = "client" // {"op":"pub"} frames on a WebSocket of the coordinator's own
)

// Scenarios lists every scenario name.
var Scenarios = []string{ScenarioConnect, ScenarioIdle, ScenarioEcho, ScenarioBroadcast, ScenarioChurn, ScenarioReconnect}

// Config is one swarm run. JSON-encoded, it is also what a coordinator sends its children.
type Config struct {
	Scenario string        `json:"scenario"`
	URL      string        `json:"url"`   // ws://host:port/path
	Admin    string        `json:"admin"` // http://host:port of the server's admin API
	Conns    int           `json:"conns"`
	Duration time.Duration `json:"duration"` // how long idle/echo/churn/reconnect run
	// Rate is per scenario: connects per second while ramping (0: as fast as the dial pool
	// goes), echo messages per second (0: closed loop), churn sockets per second, broadcast
	// messages per second.
	Rate     float64 `json:"rate"`
	ConnRate float64 `json:"conn_rate"` // connects per second for scenarios whose Rate means something else
	Size     int     `json:"size"`      // echo and broadcast payload bytes
	Messages int     `json:"messages"`  // broadcast: how many to publish
	Channel  string  `json:"channel"`   // subscribe to this channel after welcome (pub/sub servers); "" for none
	// Publish is how broadcast publishes: PublishAdmin (the admin API, the default) or
	// PublishClient (a pub frame on one extra WebSocket of the coordinator's own; needs
	// Channel, as pub is a channel operation).
	Publish string `json:"publish"`
	Source  string `json:"source"` // source addresses "127.0.0.2-127.0.0.200"
	Procs   int    `json:"procs"`  // worker processes; 1 runs in process
	// Wait bounds how long the coordinator waits for the last broadcast delivery, and
	// for reconnects after a drain.
	Wait time.Duration `json:"wait"`
	// ServerPID, when set, samples the server's RSS and CPU from /proc (local servers).
	ServerPID int `json:"server_pid"`
	// Signal, for reconnect: "term" sends SIGTERM to ServerPID once every socket is open
	// (a drain), "kill" SIGKILL; "" waits for the operator to do it.
	Signal string `json:"signal"`
	// DialTimeout bounds a connect plus its upgrade.
	DialTimeout time.Duration `json:"dial_timeout"`
	// BackoffBase and BackoffMax shape reconnects: full jitter over an exponential.
	BackoffBase time.Duration `json:"backoff_base"`
	BackoffMax  time.Duration `json:"backoff_max"`
	// Dialers is how many goroutines run blocking connects.
	Dialers int `json:"dialers"`
	// Raw skips the upgrade (echo and idle only), to measure a bare TCP server as the floor
	// with the very same client: echo sends the same masked frames and expects them back
	// byte for byte; idle holds plain TCP sockets, so the server's bytes per socket are
	// what its event loop costs before any WebSocket state.
	Raw bool `json:"raw"`
	// MinFreeBytes is the memory guard: a worker stops ramping when the host's available
	// memory (MemAvailable) falls under it, and reports the rest as failed. 0: no guard.
	MinFreeBytes int64 `json:"min_free_bytes"`
	// Tick is each loop's wheel resolution and the pacing step of open-loop echo and
	// churn. Every tick wakes every loop, so a fleet of many worker processes holding
	// idle sockets runs cheaper with a coarser tick.
	Tick time.Duration `json:"tick"`
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.Conns == 0 {
		c.Conns = 1000
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Size == 0 {
		c.Size = 64
	}
	if c.Messages == 0 {
		c.Messages = 10
	}
	if c.Source == "" {
		c.Source = "127.0.0.1"
	}
	if c.Procs == 0 {
		c.Procs = 1
	}
	if c.Wait == 0 {
		c.Wait = 30 * time.Second
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.BackoffBase == 0 {
		c.BackoffBase = 100 * time.Millisecond
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 10 * time.Second
	}
	if c.Dialers == 0 {
		c.Dialers = 64
	}
	if c.Tick == 0 {
		c.Tick = DefaultTick
	}
	return c
}

// validate returns every problem at once.
func (c Config) validate() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf("bench: "+f, a...)) }
	known := false
	for _, s := range Scenarios {
		known = known || s == c.Scenario
	}
	if !known {
		bad("unknown scenario %q (want one of %s)", c.Scenario, strings.Join(Scenarios, ", "))
	}
	if u, err := url.Parse(c.URL); err != nil || u.Scheme != "ws" || u.Host == "" {
		bad("-url %q must be ws://host:port/path (wss is not supported by the swarm)", c.URL)
	}
	switch {
	case c.Publish != "" && c.Publish != PublishAdmin && c.Publish != PublishClient:
		bad("-publish must be %s or %s, got %q", PublishAdmin, PublishClient, c.Publish)
	case c.Scenario == ScenarioBroadcast && c.Publish == PublishClient && c.Channel == "":
		bad("-publish client needs -channel: a client pub goes to a channel")
	case c.Scenario == ScenarioBroadcast && c.Publish != PublishClient && c.Admin == "":
		bad("broadcast needs -admin http://host:port to publish through (or -publish client)")
	}
	if c.Tick != 0 && (c.Tick < time.Millisecond || c.Tick > time.Second) {
		bad("-tick must be between 1ms and 1s, got %v", c.Tick)
	}
	if c.Conns < 1 {
		bad("-conns must be at least 1")
	}
	// Zeros were filled with defaults above, so anything under 1 here was asked for.
	for name, v := range map[string]int64{
		"-duration": int64(c.Duration), "-wait": int64(c.Wait), "-messages": int64(c.Messages),
		"-dialers": int64(c.Dialers), "-size": int64(c.Size), "Config.DialTimeout": int64(c.DialTimeout),
		"Config.BackoffBase": int64(c.BackoffBase), "Config.BackoffMax": int64(c.BackoffMax),
	} {
		if v < 1 {
			bad("%s must be positive", name)
		}
	}
	if !(c.Rate >= 0 && c.ConnRate >= 0) || math.IsInf(c.Rate, 0) || math.IsInf(c.ConnRate, 0) {
		bad("-rate and -conn-rate must be finite and not negative")
	}
	if c.Procs < 1 || c.Procs > c.Conns {
		bad("-procs must be between 1 and -conns")
	}
	if c.Size < 24 && (c.Scenario == ScenarioEcho || c.Scenario == ScenarioBroadcast) {
		bad("-size must be at least 24 bytes (the payload carries a sequence number and a timestamp)")
	}
	if c.Raw && c.Scenario != ScenarioEcho && c.Scenario != ScenarioIdle {
		bad("-raw works with the echo and idle scenarios only")
	}
	if c.Signal != "" && c.Signal != "term" && c.Signal != "kill" {
		bad("-signal must be term or kill")
	}
	if c.Signal != "" && c.ServerPID == 0 {
		bad("-signal needs -server-pid")
	}
	if _, err := ParseSources(c.Source); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ParseSources expands "127.0.0.2-127.0.0.200" (or a comma list of addresses and ranges)
// into IPv4 addresses.
func ParseSources(s string) ([]net.IP, error) {
	var out []net.IP
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a := net.ParseIP(lo).To4()
		if a == nil {
			return nil, fmt.Errorf("bench: bad source address %q", lo)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		b := net.ParseIP(hi).To4()
		if b == nil || !bytes.Equal(a[:3], b[:3]) || b[3] < a[3] {
			return nil, fmt.Errorf("bench: bad source range %q: want a.b.c.X-a.b.c.Y with X <= Y", part)
		}
		for x := int(a[3]); x <= int(b[3]); x++ {
			out = append(out, net.IPv4(a[0], a[1], a[2], byte(x)).To4())
		}
	}
	return out, nil
}
