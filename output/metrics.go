package output

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Outputs' Prometheus metrics. The counters are updated as
// things happen; the two gauges are computed at scrape time by gauges, so
// they are never stale.
type metrics struct {
	sent prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, o *Outputs) (*metrics, error) {
	published := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "squall_alerts_published_total", Help: "Alerts delivered to a sink (a retried alert counts again).",
	}, []string{"sink"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "squall_alert_publish_errors_total", Help: "Failed publish attempts of an alert batch to a sink.",
	}, []string{"sink"})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "squall_alerts_dropped_total", Help: "Alerts a sink had not delivered when Close's deadline passed.",
	}, []string{"sink"})
	m := &metrics{
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "squall_alerts_sent_total", Help: "Alerts accepted for delivery (to every sink; discarded when no sink is configured).",
		}),
	}
	for _, s := range o.sinks {
		s.published = published.WithLabelValues(s.name)
		s.errs = errs.WithLabelValues(s.name)
		s.droppedC = dropped.WithLabelValues(s.name)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{published, errs, dropped, m.sent, gauges{o}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("output: register metrics: %w", err)
		}
	}
	return m, nil
}

var (
	bufferedDesc = prometheus.NewDesc("squall_alerts_buffered",
		"Alerts queued for a sink and not yet delivered by it.", []string{"sink"}, nil)
	lagDesc = prometheus.NewDesc("squall_alert_output_lag_seconds",
		"Age of the oldest alert a sink has not delivered yet; 0 when it has none.", []string{"sink"}, nil)
)

// gauges computes squall_alerts_buffered and squall_alert_output_lag_seconds
// per sink at scrape time, under one lock.
type gauges struct{ o *Outputs }

func (g gauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- bufferedDesc
	ch <- lagDesc
}

func (g gauges) Collect(ch chan<- prometheus.Metric) {
	o := g.o
	type value struct {
		name          string
		buffered, lag float64
	}
	vals := make([]value, len(o.sinks))
	now := o.now()
	o.mu.Lock()
	for i, s := range o.sinks {
		vals[i].name = s.name
		if n := o.tail - s.head; n > 0 && !o.ended {
			vals[i].buffered = float64(n)
			vals[i].lag = time.Duration(now - o.at[s.head%int64(len(o.at))]).Seconds()
		}
	}
	o.mu.Unlock()
	for _, v := range vals {
		ch <- prometheus.MustNewConstMetric(bufferedDesc, prometheus.GaugeValue, v.buffered, v.name)
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, max(v.lag, 0), v.name)
	}
}
