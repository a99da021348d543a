// Command squall-node runs one Squall node: see README.md and
// docs/operations.md, or run it with -h for its flags.
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

	"github.com/squallhq/squall/node"
)

func main() {
	cfg, err := node.Load(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "squall-node:", err)
		os.Exit(2)
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by Load
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	n, err := node.New(cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "squall-node:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// SIGHUP reloads the rules file; a bad file is logged and the rules in
	// force stay.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if err := n.ReloadRules(); err != nil {
				log.Error("rules not reloaded", "err", err)
			}
		}
	}()
	if err := n.Run(ctx); err != nil {
		log.Error("squall-node stopped with an error", "err", err)
		os.Exit(1)
	}
}
