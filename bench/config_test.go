package bench_test

import (
	"context"
	"math"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wsreactor/wsreactor/bench"
)

func TestParseSources(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string // nil: an error is wanted
	}{
		{name: "single", in: "127.0.0.1", want: []string{"127.0.0.1"}},
		{name: "range", in: "127.0.0.2-127.0.0.5", want: []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}},
		{name: "one-address range", in: "10.1.2.3-10.1.2.3", want: []string{"10.1.2.3"}},
		{name: "range to .255", in: "10.0.0.254-10.0.0.255", want: []string{"10.0.0.254", "10.0.0.255"}},
		{name: "comma list", in: "127.0.0.1,127.0.0.9-127.0.0.10, 10.0.0.1", want: []string{"127.0.0.1", "127.0.0.9", "127.0.0.10", "10.0.0.1"}},
		{name: "empty", in: ""},
		{name: "host name", in: "localhost"},
		{name: "IPv6", in: "::1"},
		{name: "garbage", in: "127.0.0"},
		{name: "empty list item", in: "127.0.0.1,,127.0.0.2"},
		{name: "descending range", in: "127.0.0.5-127.0.0.2"},
		{name: "range across /24", in: "127.0.0.1-127.0.1.5"},
		{name: "open range", in: "127.0.0.1-"},
		{name: "bad range end", in: "127.0.0.1-x"},
		{name: "IPv6 range end", in: "127.0.0.1-::2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := bench.ParseSources(tc.in)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("ParseSources(%q) = %v, want an error", tc.in, got)
				}
				if !strings.HasPrefix(err.Error(), "bench: ") {
					t.Errorf("error %q lacks the bench: prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSources(%q): %v", tc.in, err)
			}
			var s []string
			for _, ip := range got {
				if len(ip) != net.IPv4len {
					t.Errorf("address %v is %d bytes, want the 4-byte form", ip, len(ip))
				}
				s = append(s, ip.String())
			}
			if !slices.Equal(s, tc.want) {
				t.Errorf("ParseSources(%q) = %v, want %v", tc.in, s, tc.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	const url = "ws://127.0.0.1:1/"
	for _, tc := range []struct {
		name string
		cfg  bench.Config
		want []string // substrings of the error, one per problem; nil: valid
	}{
		{name: "zero but scenario and url", cfg: bench.Config{Scenario: bench.ScenarioConnect, URL: url}},
		{name: "every scenario", cfg: bench.Config{Scenario: bench.ScenarioBroadcast, URL: url, Admin: "http://127.0.0.1:2"}},
		{name: "small size outside echo", cfg: bench.Config{Scenario: bench.ScenarioIdle, URL: url, Size: 8}},
		{name: "procs equal to conns", cfg: bench.Config{Scenario: bench.ScenarioConnect, URL: url, Conns: 4, Procs: 4}},
		{name: "kill with pid", cfg: bench.Config{Scenario: bench.ScenarioReconnect, URL: url, Signal: "kill", ServerPID: 1}},
		{name: "unknown scenario", cfg: bench.Config{Scenario: "flood", URL: url}, want: []string{`unknown scenario "flood"`}},
		{name: "no scenario", cfg: bench.Config{URL: url}, want: []string{`unknown scenario ""`}},
		{name: "http url", cfg: bench.Config{Scenario: bench.ScenarioConnect, URL: "http://127.0.0.1:1/"}, want: []string{"-url"}},
		{name: "wss url", cfg: bench.Config{Scenario: bench.ScenarioConnect, URL: "wss://127.0.0.1:1/"}, want: []string{"-url"}},
		{name: "no host", cfg: bench.Config{Scenario: bench.ScenarioConnect, URL: "ws:///path"}, want: []string{"-url"}},
		{name: "unparsable url", cfg: bench.Config{Scenario: bench.ScenarioConnect, URL: "ws://[::1"}, want: []string{"-url"}},
		{name: "broadcast without admin", cfg: bench.Config{Scenario: bench.ScenarioBroadcast, URL: url}, want: []string{"broadcast needs -admin"}},
		{name: "negative conns", cfg: bench.Config{Scenario: bench.ScenarioConnect, URL: url, Conns: -1}, want: []string{"-conns", "-procs"}},
		{name: "procs over conns", cfg: bench.Config{Scenario: bench.ScenarioConnect, URL: url, Conns: 2, Procs: 3}, want: []string{"-procs"}},
		{name: "negative procs", cfg: bench.Config{Scenario: bench.ScenarioConnect, URL: url, Procs: -1}, want: []string{"-procs"}},
		{name: "echo size under 24", cfg: bench.Config{Scenario: bench.ScenarioEcho, URL: url, Size: 23}, want: []string{"-size"}},
		{name: "broadcast size under 24", cfg: bench.Config{Scenario: bench.ScenarioBroadcast, URL: url, Admin: "http://127.0.0.1:2", Size: 10}, want: []string{"-size"}},
		{name: "bad signal", cfg: bench.Config{Scenario: bench.ScenarioReconnect, URL: url, Signal: "hup", ServerPID: 1}, want: []string{"-signal must be term or kill"}},
		{name: "signal without pid", cfg: bench.Config{Scenario: bench.ScenarioReconnect, URL: url, Signal: "term"}, want: []string{"-signal needs -server-pid"}},
		{name: "coarse tick", cfg: bench.Config{Scenario: bench.ScenarioIdle, URL: url, Tick: time.Second}},
		{name: "tick under 1ms", cfg: bench.Config{Scenario: bench.ScenarioIdle, URL: url, Tick: time.Microsecond}, want: []string{"-tick"}},
		{name: "tick over 1s", cfg: bench.Config{Scenario: bench.ScenarioIdle, URL: url, Tick: 2 * time.Second}, want: []string{"-tick"}},
		{name: "client pub without admin", cfg: bench.Config{Scenario: bench.ScenarioBroadcast, URL: url, Channel: "c", Publish: bench.PublishClient}},
		{name: "client pub without channel", cfg: bench.Config{Scenario: bench.ScenarioBroadcast, URL: url, Publish: bench.PublishClient}, want: []string{"-publish client needs -channel"}},
		{name: "unknown publish", cfg: bench.Config{Scenario: bench.ScenarioBroadcast, URL: url, Admin: "http://127.0.0.1:2", Publish: "nats"}, want: []string{"-publish must be admin or client"}},
		{name: "raw echo", cfg: bench.Config{Scenario: bench.ScenarioEcho, URL: url, Raw: true}},
		{name: "raw idle", cfg: bench.Config{Scenario: bench.ScenarioIdle, URL: url, Raw: true}},
		{name: "raw broadcast", cfg: bench.Config{Scenario: bench.ScenarioBroadcast, URL: url, Admin: "http://127.0.0.1:2", Raw: true}, want: []string{"-raw works with the echo and idle scenarios only"}},
		// Negative values used to panic (-messages) or hang the run (-dialers).
		{name: "negative messages", cfg: bench.Config{Scenario: bench.ScenarioBroadcast, URL: url, Admin: "http://127.0.0.1:2", Messages: -1}, want: []string{"-messages must be positive"}},
		{name: "negative dialers", cfg: bench.Config{Scenario: bench.ScenarioIdle, URL: url, Dialers: -1}, want: []string{"-dialers must be positive"}},
		{name: "negative duration and wait", cfg: bench.Config{Scenario: bench.ScenarioIdle, URL: url, Duration: -time.Second, Wait: -1}, want: []string{"-duration must be positive", "-wait must be positive"}},
		{name: "negative rate", cfg: bench.Config{Scenario: bench.ScenarioEcho, URL: url, Rate: -5}, want: []string{"-rate and -conn-rate"}},
		{name: "NaN conn rate", cfg: bench.Config{Scenario: bench.ScenarioIdle, URL: url, ConnRate: math.NaN()}, want: []string{"-rate and -conn-rate"}},
		{name: "bad source", cfg: bench.Config{Scenario: bench.ScenarioConnect, URL: url, Source: "127.0.0.9-127.0.0.1"}, want: []string{"bad source range"}},
		{
			name: "every problem at once",
			cfg:  bench.Config{Scenario: "flood", URL: "http://x/", Conns: 1, Procs: 2, Signal: "hup", Source: "nope"},
			want: []string{"unknown scenario", "-url", "-procs", "-signal must be", "-signal needs", "bad source address"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := bench.Validate(tc.cfg)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want an error mentioning %q", tc.want)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if lines := strings.Count(msg, "\n") + 1; lines != len(tc.want) {
				t.Errorf("error has %d problems, want %d:\n%s", lines, len(tc.want), msg)
			}
			for _, line := range strings.Split(msg, "\n") {
				if !strings.HasPrefix(line, "bench: ") {
					t.Errorf("problem %q lacks the bench: prefix", line)
				}
			}
		})
	}
}

// TestRunInvalid checks that Run refuses a bad configuration before opening anything.
func TestRunInvalid(t *testing.T) {
	r, err := bench.Run(context.Background(), bench.Config{Scenario: "flood", URL: "ws://127.0.0.1:1/"}, "", nil)
	if err == nil || r != nil {
		t.Fatalf("Run(unknown scenario) = %v, %v; want no report and an error", r, err)
	}
	if !strings.Contains(err.Error(), "unknown scenario") {
		t.Errorf("Run error %q, want it to name the unknown scenario", err)
	}
}
