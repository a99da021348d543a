package jslog

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	applied, bad, replayed        prometheus.Counter
	lag, replaying, buffered      *prometheus.GaugeVec
	commits, commitErrors, resets prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	msgs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "squall_log_messages_total",
		Help: "JetStream log messages handled live, by result (applied; bad: not decodable, skipped).",
	}, []string{"result"})
	m := &metrics{
		applied: msgs.WithLabelValues("applied"),
		bad:     msgs.WithLabelValues("bad"),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "squall_log_replay_messages_total",
			Help: "JetStream log messages read in restore mode to rebuild key windows.",
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "squall_log_lag",
			Help: "Messages of a consumed partition not yet applied (pending on the server as of the last delivery, plus buffered).",
		}, []string{"partition"}),
		replaying: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "squall_log_replaying",
			Help: "1 while a partition replays its restore range (restore mode), else 0.",
		}, []string{"partition"}),
		buffered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "squall_log_buffered_messages",
			Help: "Messages of a partition fetched and not yet applied.",
		}, []string{"partition"}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "squall_log_commits_total",
			Help: "Partition progress commits made.",
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "squall_log_commit_errors_total",
			Help: "Partition progress commits that failed (retried at the next interval, except when fenced).",
		}),
		resets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "squall_log_consumer_resets_total",
			Help: "Partition consumers created again from the last sequence read (server restart, leader change, gap).",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{msgs, m.replayed, m.lag, m.replaying, m.buffered, m.commits, m.commitErrors, m.resets} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("jslog: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
