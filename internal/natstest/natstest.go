// Package natstest starts in-process NATS servers for tests.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Start starts a NATS server on 127.0.0.1:port (-1: a free port), shut
// down when the test ends. Shutting it down earlier is fine.
func Start(t testing.TB, port int) *server.Server {
	t.Helper()
	return StartWith(t, &server.Options{Port: port})
}

// StartWith starts a NATS server with o (authentication, TLS, ...) on
// 127.0.0.1, port o.Port (0 or -1: a free port), without signal handlers
// or logs, shut down when the test ends.
func StartWith(t testing.TB, o *server.Options) *server.Server {
	t.Helper()
	o.Host, o.NoSigs, o.NoLog = "127.0.0.1", true, true
	if o.Port == 0 {
		o.Port = server.RANDOM_PORT
	}
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}
