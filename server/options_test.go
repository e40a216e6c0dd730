package server_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/wsreactor/wsreactor/server"
)

// TestNewRejectsBadOptions checks that New refuses options it cannot run with, naming the
// option, before it opens any listener.
func TestNewRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts server.Options
		want string
	}{
		{name: "unknown app", opts: server.Options{App: "chat"}, want: "app must be"},
		{name: "negative tick", opts: server.Options{Tick: -time.Millisecond}, want: "tick must be positive"},
		{name: "tick over a second", opts: server.Options{Tick: 2 * time.Second}, want: "tick must be at most 1s"},
		{name: "idle timeout under heartbeat", opts: server.Options{Heartbeat: 10 * time.Second, IdleTimeout: 5 * time.Second}, want: "idle-timeout"},
		{name: "message limit of 4 GiB", opts: server.Options{MaxMessageBytes: 4 << 30}, want: "max-message-bytes must be at most 4294967295"},
		{name: "negative loops", opts: server.Options{Loops: -1}, want: "loops must be positive"},
		{name: "send buffer limit of 2 GiB", opts: server.Options{SendBufferLimit: 2 << 30}, want: "send-buffer-limit must be under 2GiB"},
		// NaN passes a "< 0" check; as a client rate it would refuse every message.
		{name: "client rate NaN", opts: server.Options{ClientRate: math.NaN()}, want: "client-rate and channel-rate must be finite"},
		{name: "channel rate +Inf", opts: server.Options{ChannelRate: math.Inf(1)}, want: "client-rate and channel-rate must be finite"},
		{name: "negative client rate", opts: server.Options{ClientRate: -1}, want: "client-rate and channel-rate must be finite"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Listen, tc.opts.Admin = "127.0.0.1:0", "127.0.0.1:0"
			if _, err := server.New(tc.opts); err == nil {
				t.Fatalf("New accepted %+v", tc.opts)
			} else if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// TestNewAcceptsCoarseTick checks that a tick up to one second is a valid choice (the scale
// run uses 100 ms to cut each idle process's wake-ups).
func TestNewAcceptsCoarseTick(t *testing.T) {
	if _, err := server.New(server.Options{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Tick: time.Second}); err != nil {
		t.Fatalf("New with a 1s tick: %v", err)
	}
}
