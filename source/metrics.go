package source

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// What became of a record, as the result label of squall_kafka_records_total.
const (
	resultApplied      = "applied"       // every event applied
	resultPartial      = "partial"       // valid events applied, invalid ones counted
	resultDeadLettered = "dead_lettered" // bad, written to the DLQ topic
	resultSkipped      = "skipped"       // bad, no DLQ topic (or replayed)
)

// Why a record is bad, as the reason label of squall_kafka_bad_records_total
// and the value of the squall-error header.
const (
	ReasonMalformed = "malformed" // not JSON, or JSON holding no event object
	ReasonEmpty     = "empty"     // empty or blank value, empty array
	ReasonOversized = "oversized" // value over Config.MaxRecordBytes
	ReasonInvalid   = "invalid"   // event objects, every one failing validation
)

var badReasons = []string{ReasonMalformed, ReasonEmpty, ReasonOversized, ReasonInvalid}

// ErrorHeader is the header of a dead-lettered record that holds why it is
// bad (one of the Reason constants). The source's topic, partition and
// offset are in the headers squall-topic, squall-partition, squall-offset.
const ErrorHeader = "squall-error"

type metrics struct {
	applied, partial, deadLettered, skipped prometheus.Counter
	bad                                     map[string]prometheus.Counter
	invalid                                 *prometheus.CounterVec
	lag, replaying, buffered                *prometheus.GaugeVec
	replayRecords, commits, commitErrors    prometheus.Counter
	groupCommitErrors                       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	records := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "squall_kafka_records_total",
		Help: "Kafka records handled, by result (applied, partial, dead_lettered, skipped).",
	}, []string{"result"})
	bad := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "squall_kafka_bad_records_total",
		Help: "Kafka records dead-lettered or skipped, by reason (malformed, empty, oversized, invalid).",
	}, []string{"reason"})
	m := &metrics{
		applied:      records.WithLabelValues(resultApplied),
		partial:      records.WithLabelValues(resultPartial),
		deadLettered: records.WithLabelValues(resultDeadLettered),
		skipped:      records.WithLabelValues(resultSkipped),
		bad:          make(map[string]prometheus.Counter, len(badReasons)),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "squall_kafka_invalid_events_total",
			Help: "Events rejected inside records that had valid events too, by offending field (\"event\" for a malformed one, \"unlisted\" past the listed rejections).",
		}, []string{"reason"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "squall_kafka_lag",
			Help: "Records of a consumed partition not yet applied: high watermark minus applied offset.",
		}, []string{"partition"}),
		replaying: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "squall_kafka_replaying",
			Help: "1 while a partition replays its restore range (restore mode), else 0.",
		}, []string{"partition"}),
		buffered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "squall_kafka_buffered_records",
			Help: "Records of a partition fetched and not yet applied (its actor's queue).",
		}, []string{"partition"}),
		replayRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "squall_kafka_replay_records_total",
			Help: "Kafka records read in restore mode to rebuild key windows.",
		}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "squall_kafka_commits_total",
			Help: "Partition offsets committed.",
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "squall_kafka_commit_errors_total",
			Help: "Partition offset commits that failed (retried at the next interval).",
		}),
		groupCommitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "squall_kafka_group_commit_errors_total",
			Help: "Commits of offsets to the consumer group that failed when the progress is kept in a fenced store (the group's offsets then serve monitoring only).",
		}),
	}
	for _, r := range badReasons {
		m.bad[r] = bad.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{records, bad, m.invalid, m.lag, m.replaying, m.buffered,
			m.replayRecords, m.commits, m.commitErrors, m.groupCommitErrors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("source: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
