// Command squallctl is Squall's command line for operators: it sends
// events, shows a key's state, lists keys, describes the cluster, lists and
// follows alerts, and checks a rules file. Run "squallctl --help", and see
// docs/squallctl.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
