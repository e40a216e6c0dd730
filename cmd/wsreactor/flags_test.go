package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wsreactor/wsreactor/server"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "262144", want: 262144},
		{in: "256KiB", want: 256 << 10},
		{in: "2MiB", want: 2 << 20},
		{in: "1GiB", want: 1 << 30},
		{in: " 16 MiB ", want: 16 << 20},
		{in: "0", want: 0},
		{in: "1MB", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "", wantErr: true},
		{in: "KiB", wantErr: true},
		{in: "99999999999GiB", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, err=%v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseFlagsDefaults(t *testing.T) {
	o, err := parseFlags(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	want := server.Options{
		Listen: ":8080", Admin: "127.0.0.1:9090", App: "pubsub",
		Heartbeat: 30 * time.Second, IdleTimeout: 75 * time.Second, HandshakeTimeout: 5 * time.Second,
		Tick: 10 * time.Millisecond, MaxMessageBytes: 1 << 20, SendBufferLimit: 1 << 20, DrainTimeout: 30 * time.Second, ReconnectHint: 2 * time.Second,
		Broker: "local", NATSURL: "nats://127.0.0.1:4222", Routing: "directed",
	}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", o, want)
	}
}

func TestParseFlagsEnvAndPrecedence(t *testing.T) {
	env := map[string]string{
		"WSR_APP":               "echo",
		"WSR_MAX_MESSAGE_BYTES": "256KiB",
		"WSR_HEARTBEAT":         "10s",
		"WSR_ALLOWED_ORIGINS":   "https://a.example, https://b.example",
		"WSR_REUSE_PORT":        "true",
		"WSR_LISTEN":            ":1111",
	}
	o, err := parseFlags([]string{"-listen", ":2222"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if o.Listen != ":2222" {
		t.Errorf("flag must win over env: Listen = %q", o.Listen)
	}
	if o.App != "echo" || o.MaxMessageBytes != 256<<10 || o.Heartbeat != 10*time.Second || !o.ReusePort {
		t.Errorf("env not applied: %+v", o)
	}
	if !reflect.DeepEqual(o.AllowedOrigins, []string{"https://a.example", "https://b.example"}) {
		t.Errorf("AllowedOrigins = %q", o.AllowedOrigins)
	}
}

// A flag on the command line wins even over an environment value that does not parse.
func TestParseFlagsFlagOverridesBadEnv(t *testing.T) {
	env := map[string]string{"WSR_HEARTBEAT": "bogus"}
	o, err := parseFlags([]string{"-heartbeat", "10s"}, func(k string) string { return env[k] })
	if err != nil || o.Heartbeat != 10*time.Second {
		t.Fatalf("Heartbeat = %v, err = %v; want 10s and no error", o.Heartbeat, err)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{name: "bad env size", env: map[string]string{"WSR_MAX_MESSAGE_BYTES": "lots"}, want: "WSR_MAX_MESSAGE_BYTES"},
		{name: "bad env duration", env: map[string]string{"WSR_HEARTBEAT": "soon"}, want: "WSR_HEARTBEAT"},
		{name: "bad flag size", args: []string{"-max-message-bytes", "1MB"}, want: "invalid size"},
		{name: "stray argument", args: []string{"extra"}, want: "unexpected arguments"},
		// server.Options would read 0 as "the default": an explicit 0 is refused instead.
		{name: "zero heartbeat", args: []string{"-heartbeat", "0"}, want: "-heartbeat must be positive"},
		{name: "zero reconnect hint and drain timeout", args: []string{"-reconnect-hint", "0s", "-drain-timeout", "0"}, want: "-drain-timeout, -reconnect-hint must be positive"},
		{name: "zero size from env", env: map[string]string{"WSR_SEND_BUFFER_LIMIT": "0"}, want: "-send-buffer-limit must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFlags(tt.args, func(k string) string { return tt.env[k] })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}
