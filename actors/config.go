package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/window"
)

// Config configures an Engine. Start from DefaultConfig.
type Config struct {
	// Node is this node's id, shown in key-state documents. Default "standalone".
	Node string
	// Partitions is the number of key partitions. Default 64.
	Partitions int
	// Clustered starts the engine serving no partition: the cluster
	// assignment calls Acquire and Release. Default false: standalone, every
	// partition served from the start.
	Clustered bool
	// AwaitHandoff bounds how long an acquired partition holds its events
	// waiting for the previous owner's state before it starts empty; 0
	// sets no bound: the caller ends the wait with Restore (a clustered
	// node's partition lifecycle does). Default 15s.
	AwaitHandoff time.Duration
	// Shape is the window shape of every key. Default window.DefaultShape().
	Shape window.Shape
	// IdleTTL passivates a key actor after this long without events
	// (wall-clock). Default 10m.
	IdleTTL time.Duration
	// MaxKeys is the number of live key actors beyond which events for new
	// keys are shed. Default 2,000,000.
	MaxKeys int
	// MaxInflight bounds the events submitted but not yet applied, across
	// all partitions; Submit waits (or fails with its context) beyond it.
	// Default 1,048,576.
	MaxInflight int
	// Handler runs each key's logic. Default WindowHandler{}.
	Handler Handler
	// Sink receives what handlers emit, on the partition's goroutine; it
	// must not block for long. Default: outputs are discarded and counted.
	Sink func(Output)
	// OnServe, when set, is called once a partition starts serving: at
	// once when acquired without a wait, or when the previous owner's state
	// has arrived (handedOver true), or when the wait for it timed out. It
	// runs on the partition's goroutine and must not block. Default nil.
	OnServe func(p int32, handedOver bool)
	// AfterApply, when set, is called on the partition's goroutine after
	// each batch of the partition is applied, with its events (for
	// measuring ingest → applied latency: benchmarks, tests). It must not
	// block nor keep evs. Default nil.
	AfterApply func(evs []event.Event)
	// TickInterval is how often a StatefulHandler's Tick runs on each
	// partition (its timers' resolution). Default 1s.
	TickInterval time.Duration
	// Clock reads wall-clock time (activation, last event, passivation).
	// Default the system clock.
	Clock Clock
	// Logger logs the engine's events. Default slog.Default().
	Logger *slog.Logger
	// Registerer registers the engine's metrics. Default: none registered.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Node:         "standalone",
		Partitions:   64,
		Shape:        window.DefaultShape(),
		IdleTTL:      10 * time.Minute,
		MaxKeys:      2_000_000,
		MaxInflight:  1 << 20,
		AwaitHandoff: 15 * time.Second,
		TickInterval: time.Second,
		Handler:      WindowHandler{},
		Clock:        SystemClock{},
	}
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	var errs []error
	if c.Partitions < 1 || c.Partitions > 1<<16 {
		errs = append(errs, fmt.Errorf("partitions %d: must be in 1..65536", c.Partitions))
	}
	if err := c.Shape.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.IdleTTL <= 0 {
		errs = append(errs, fmt.Errorf("idle-ttl %s: must be positive", c.IdleTTL))
	}
	if c.MaxKeys < 1 {
		errs = append(errs, fmt.Errorf("max-keys %d: must be positive", c.MaxKeys))
	}
	if c.AwaitHandoff < 0 {
		errs = append(errs, fmt.Errorf("await-handoff %s: must not be negative", c.AwaitHandoff))
	}
	if c.TickInterval <= 0 {
		errs = append(errs, fmt.Errorf("tick-interval %s: must be positive", c.TickInterval))
	}
	if c.MaxInflight < 1 {
		errs = append(errs, fmt.Errorf("max-inflight %d: must be positive", c.MaxInflight))
	}
	if c.Handler == nil {
		errs = append(errs, errors.New("handler: must be set"))
	}
	if c.Clock == nil {
		errs = append(errs, errors.New("clock: must be set"))
	}
	return errors.Join(errs...)
}

// Clock reads wall-clock time; tests inject a manual one.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }
