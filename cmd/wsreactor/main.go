package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/wsreactor/wsreactor/server"
)

func main() {
	os.Exit(run())
}

func run() int {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	slog.SetDefault(log)
	opts, err := parseFlags(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wsreactor:", err)
		return 2
	}
	opts.Logger = log
	srv, err := server.New(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wsreactor:", err)
		return 2
	}
	// SIGTERM (a deploy) and SIGINT (Ctrl-C) drain: Run sees ctx end and shuts down within
	// -drain-timeout. A second one is not caught: it ends the process at once, for an
	// operator who cannot wait for the drain.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	if err := srv.Run(ctx); err != nil {
		log.Error("exit", "err", err)
		return 1
	}
	return 0
}
