// Command swarm is wsreactor's client swarm: it opens and drives many WebSocket
// connections against a server and reports what it measured (see package bench).
//
//	swarm SCENARIO -url ws://127.0.0.1:8080/ [-admin http://127.0.0.1:9090] -conns N \
//	      -duration D -report FILE.json [-rate R] [-size B] [-source 127.0.0.2-127.0.0.200] [-procs P]
//
// Scenarios: connect, idle, echo, broadcast, churn, reconnect. It prints a Markdown summary
// on stdout and writes the JSON report to -report.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/wsreactor/wsreactor/bench"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if len(args) > 0 && args[0] == "-worker" {
		if err := bench.RunChild(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "swarm worker:", err)
			return 1
		}
		return 0
	}
	usage := func() {
		fmt.Fprintf(os.Stderr, "usage: swarm SCENARIO [flags]\n\nscenarios: %s\n\n", strings.Join(bench.Scenarios, ", "))
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		usage()
		return 2
	}
	var cfg bench.Config
	cfg.Scenario = args[0]
	var report string
	fs := flag.NewFlagSet("swarm "+cfg.Scenario, flag.ContinueOnError)
	fs.StringVar(&cfg.URL, "url", "ws://127.0.0.1:8080/", "server WebSocket URL")
	fs.StringVar(&cfg.Admin, "admin", "", "server admin base URL, e.g. http://127.0.0.1:9090 (broadcast publishes through it; metrics are captured from it)")
	fs.IntVar(&cfg.Conns, "conns", 1000, "connections")
	fs.DurationVar(&cfg.Duration, "duration", 0, "how long idle, echo, churn and reconnect run (default 10s)")
	fs.StringVar(&report, "report", "", "write the JSON report to this file")
	fs.Float64Var(&cfg.Rate, "rate", 0, "connect: connects/s; echo: messages/s (0: closed loop); churn: sockets/s; broadcast: messages/s")
	fs.Float64Var(&cfg.ConnRate, "conn-rate", 0, "connects/s while ramping for scenarios other than connect (0: as fast as dialers go)")
	fs.IntVar(&cfg.Size, "size", 64, "echo and broadcast payload bytes")
	fs.IntVar(&cfg.Messages, "messages", 10, "broadcast: messages to publish")
	fs.StringVar(&cfg.Channel, "channel", "", "subscribe every socket to this channel after connecting (pub/sub servers); broadcast then publishes to it")
	fs.StringVar(&cfg.Publish, "publish", bench.PublishAdmin, "broadcast: publish through the admin API (admin) or as {\"op\":\"pub\"} frames on one extra WebSocket (client, needs -channel)")
	fs.StringVar(&cfg.Source, "source", "127.0.0.1", "source addresses, e.g. 127.0.0.2-127.0.0.200, so ephemeral ports do not run out")
	fs.IntVar(&cfg.Procs, "procs", 1, "worker processes (each holds conns/procs sockets; use it past the open-file limit)")
	fs.DurationVar(&cfg.Wait, "wait", 0, "broadcast: how long to wait for the last delivery (default 30s)")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "pid of a local server, for its RSS and CPU from /proc")
	fs.StringVar(&cfg.Signal, "signal", "", "reconnect: send term (drain) or kill to -server-pid once every socket is open")
	fs.IntVar(&cfg.Dialers, "dialers", 0, "concurrent connects (default 64)")
	fs.DurationVar(&cfg.Tick, "tick", bench.DefaultTick, "wheel resolution and pacing step per loop; coarser costs less idle CPU (many workers holding idle sockets)")
	minFree := int64(0)
	fs.Int64Var(&minFree, "min-free-mib", 0, "memory guard: stop ramping when the host's available memory falls under this many MiB (0: none)")
	fs.BoolVar(&cfg.Raw, "raw", false, "no upgrade, against a bare TCP server (the floor): echo sends the same masked frames and expects them back byte for byte; idle holds plain sockets")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg.MinFreeBytes = minFree << 20
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "swarm: unexpected arguments %q\n", fs.Args())
		return 2
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "swarm:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var progress *os.File
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		progress = os.Stderr
	}
	var r *bench.Report
	if progress != nil {
		r, err = bench.Run(ctx, cfg, exe, progress)
	} else {
		r, err = bench.Run(ctx, cfg, exe, nil)
	}
	if r == nil {
		fmt.Fprintln(os.Stderr, "swarm:", err)
		return 1
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "swarm: warning:", err)
	}
	r.WriteMarkdown(os.Stdout)
	if report != "" {
		b, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(report, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "swarm:", err)
			return 1
		}
	}
	if r.Errors > 0 || r.Lost > 0 {
		return 3
	}
	return 0
}
