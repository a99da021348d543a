package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/event"
)

// NATSConfig configures the NATS subscription. Start from DefaultNATSConfig.
type NATSConfig struct {
	// Subject carries events. Default "squall.events".
	Subject string
	// Queue is the queue group, so each message reaches one node. Default "squall".
	Queue string
	// PendingMsgs and PendingBytes bound the messages buffered in the client
	// before it drops them as a slow consumer (counted). Defaults 65,536 and 256 MiB.
	PendingMsgs, PendingBytes int
}

// DefaultNATSConfig returns the defaults documented on NATSConfig.
func DefaultNATSConfig() NATSConfig {
	return NATSConfig{Subject: "squall.events", Queue: "squall", PendingMsgs: 1 << 16, PendingBytes: 256 << 20}
}

// SubscribeNATS subscribes in to cfg.Subject on nc. A message is decoded
// like an HTTP body (its Content-Type header picks the format). A message
// with a reply subject is answered with an api.IngestResponse once its
// events are applied; one without is applied asynchronously. The
// subscription ends when nc is drained or closed, which waits for the
// messages already received.
func SubscribeNATS(nc *nats.Conn, cfg NATSConfig, in *Ingester, log *slog.Logger) (*nats.Subscription, error) {
	m := in.count[SourceNATS]
	sub, err := nc.QueueSubscribe(cfg.Subject, cfg.Queue, func(msg *nats.Msg) {
		ct := ""
		if msg.Header != nil {
			ct = msg.Header.Get("Content-Type")
		}
		if msg.Reply == "" {
			if err := in.IngestAsync(context.Background(), SourceNATS, msg.Data, ct, nil); err != nil {
				log.Debug("nats message rejected", "subject", msg.Subject, "err", err)
			}
			return
		}
		res, err := in.Ingest(context.Background(), SourceNATS, msg.Data, ct)
		if err != nil {
			res.Response = api.IngestResponse{Error: err.Error(), Rejected: []event.Rejection{}}
		}
		b, _ := json.Marshal(res.Response) // plain structs: cannot fail
		if err := msg.Respond(b); err != nil {
			m.body.WithLabelValues("reply_failed").Inc()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("ingest: subscribe %s: %w", cfg.Subject, err)
	}
	if err := sub.SetPendingLimits(cfg.PendingMsgs, cfg.PendingBytes); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("ingest: pending limits: %w", err)
	}
	// The server has the subscription once a round trip after it is done:
	// from then on nothing published to the subject misses it (a node
	// reports itself started only after this).
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("ingest: subscribe %s: %w", cfg.Subject, err)
	}
	return sub, nil
}
