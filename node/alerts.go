package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/squallhq/squall/actors"
	"github.com/squallhq/squall/alerts"
	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/output"
	"github.com/squallhq/squall/rules"
)

// alertSide is the part of a node that exists with --rules: the rules
// handler run by the key actors, and the outputs their transitions go
// through (NATS, and Kafka with --alerts-kafka-topic).
type alertSide struct {
	n   *Node
	h   *alerts.Handler
	out *output.Outputs
	nc  *nats.Conn  // its own: the node's connection is drained first on shutdown
	kcl *kgo.Client // nil without --alerts-kafka-topic

	// ctx bounds Send when the outputs are full: canceled when the node's
	// shutdown deadline passes.
	ctx    context.Context
	cancel context.CancelFunc

	reloadMu sync.Mutex
	reloads  *prometheus.CounterVec
}

// loadRules reads and checks the rules file against the window shape.
func (n *Node) loadRules() (*rules.Set, error) {
	set, err := rules.Load(n.cfg.Rules)
	if err != nil {
		return nil, fmt.Errorf("--rules: %w", err)
	}
	shape := n.cfg.Shape()
	if err := set.CheckShape(&shape); err != nil {
		return nil, fmt.Errorf("--rules: %w", err)
	}
	return set, nil
}

// startAlerts loads the rules and starts the outputs; the engine is
// created after it, with a.h as its Handler and a.sink as its Sink.
func (n *Node) startAlerts() error {
	set, err := n.loadRules()
	if err != nil {
		return err
	}
	a := &alertSide{n: n, reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "squall_rules_reloads_total", Help: "Rules file reloads (SIGHUP), by result (ok, error).",
	}, []string{"result"})}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	n.alerts = a
	if err := n.reg.Register(a.reloads); err != nil {
		return err
	}
	if a.h, err = alerts.New(set, nil, n.reg); err != nil {
		return err
	}
	if a.nc, err = nats.Connect(n.natsURL, n.natsOptions("alerts")...); err != nil {
		return fmt.Errorf("--nats-url %s: alerts connection: %w", n.natsURL, err)
	}
	sinks := []output.Sink{output.NewNATSSink(a.nc, n.cfg.AlertsSubject, 5*time.Second)}
	if n.cfg.AlertsKafkaTopic != "" {
		kc := n.kafkaConfig()
		if kc.TLS, err = n.kafkaTLS(); err != nil {
			return err
		}
		a.kcl, err = kc.NewClient(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0),
			kgo.ClientID("squall-"+n.cfg.NodeID+"-alerts"))
		if err != nil {
			return fmt.Errorf("--alerts-kafka-topic %s: %w", n.cfg.AlertsKafkaTopic, err)
		}
		sinks = append(sinks, output.NewKafkaSink(a.kcl, n.cfg.AlertsKafkaTopic))
	}
	oc := output.DefaultConfig()
	oc.Buffer, oc.Logger, oc.Registerer = n.cfg.AlertsBuffer, n.log, n.reg
	if a.out, err = output.New(oc, sinks...); err != nil {
		return err
	}
	n.log.Info("alert rules loaded", "file", n.cfg.Rules, "rules", set.Len(), "outputs", len(sinks))
	return nil
}

// sink is the engine's Sink: a transition goes to the outputs, blocking
// the key's partition while they are full (back-pressure on intake).
func (a *alertSide) sink(o actors.Output) {
	tr, ok := o.Payload.(rules.Transition)
	if !ok {
		return
	}
	b, err := json.Marshal(tr)
	if err != nil {
		a.n.log.Error("alert encoding", "id", tr.ID(), "err", err)
		return
	}
	al := output.Alert{Key: tr.Key, ID: tr.ID(), Payload: b, Partition: o.Partition, Offset: o.Offset}
	if err := a.out.Send(a.ctx, al); err != nil {
		a.n.log.Warn("alert not queued: shutting down", "id", al.ID, "err", err)
	}
}

// ReloadRules reads the rules file again and puts it in force, keeping the
// state of unchanged rules; a bad file is an error and the rules in force
// stay. Without --rules it is an error.
func (n *Node) ReloadRules() error {
	a := n.alerts
	if a == nil {
		return errors.New("no --rules file to reload")
	}
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	set, err := n.loadRules()
	if err != nil {
		a.reloads.WithLabelValues("error").Inc()
		return err
	}
	a.h.Reload(set)
	a.reloads.WithLabelValues("ok").Inc()
	n.log.Info("alert rules reloaded", "file", n.cfg.Rules, "rules", set.Len())
	return nil
}

// close delivers what the outputs hold until ctx ends, then closes their
// connections. The engine is closed: nothing is sent any more.
func (a *alertSide) close(ctx context.Context) {
	if a.out != nil {
		_ = a.out.Close(ctx) // it logs and counts the alerts it had to drop
	}
	a.cancel()
	if a.nc != nil {
		a.nc.Close()
	}
	if a.kcl != nil {
		a.kcl.Close()
	}
}

// Rules implements httpapi.Backend: the rules in force, as last loaded.
func (n *Node) Rules(context.Context) (*api.Rules, error) {
	doc := &api.Rules{Node: n.cfg.NodeID}
	if n.alerts != nil {
		set := n.alerts.h.Rules()
		doc.File, doc.YAML, doc.Count = set.File, string(set.Source), set.Len()
	}
	return doc, nil
}

// Alerts implements httpapi.Backend: this node's firing alerts or, with
// cluster, every member's (asked over HTTP; the ones that fail are named
// in Errors).
func (n *Node) Alerts(ctx context.Context, cluster bool) (*api.Alerts, error) {
	doc := &api.Alerts{Alerts: n.firing()}
	if !cluster || n.cl == nil {
		return doc, nil
	}
	type answer struct {
		doc *api.Alerts
		err error
	}
	answers := askPeers(n, func(m api.Member) answer {
		d, err := n.peerAlerts(ctx, m.HTTPAddr)
		return answer{d, err}
	})
	for _, id := range slices.Sorted(maps.Keys(answers)) {
		a := answers[id]
		if a.err != nil {
			if doc.Errors == nil {
				doc.Errors = map[string]string{}
			}
			doc.Errors[id] = a.err.Error()
			continue
		}
		doc.Alerts = append(doc.Alerts, a.doc.Alerts...)
	}
	sort.SliceStable(doc.Alerts, func(i, j int) bool { return doc.Alerts[i].Node < doc.Alerts[j].Node })
	return doc, nil
}

func (n *Node) firing() []api.FiringAlert {
	out := []api.FiringAlert{}
	if n.alerts == nil {
		return out
	}
	for _, tr := range n.alerts.h.Firing() {
		b, err := json.Marshal(tr)
		if err != nil {
			continue
		}
		out = append(out, api.FiringAlert{Node: n.cfg.NodeID, Alert: b})
	}
	return out
}

// askPeers calls ask for every member of the cluster but this node, all
// at once, and returns the answers by member id.
func askPeers[T any](n *Node, ask func(m api.Member) T) map[string]T {
	type answer struct {
		id string
		v  T
	}
	members := n.cl.describe().Members
	answers := make(chan answer, len(members))
	asked := 0
	for _, m := range members {
		if m.ID == n.cfg.NodeID {
			continue
		}
		asked++
		go func() { answers <- answer{m.ID, ask(m)} }()
	}
	out := make(map[string]T, asked)
	for range asked {
		a := <-answers
		out[a.id] = a.v
	}
	return out
}

// peerAlerts asks a member's HTTP API for its own firing alerts.
func (n *Node) peerAlerts(ctx context.Context, httpAddr string) (*api.Alerts, error) {
	var d api.Alerts
	code, err := n.peerGet(ctx, httpAddr, api.PathAlerts, 5*time.Second, &d)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("%s: %d %s", httpAddr, code, http.StatusText(code))
	}
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// peerGet asks a member's HTTP API for path, with the node's token, within
// timeout, and decodes the JSON body of the answer, whatever its status,
// into v. It returns the status.
func (n *Node) peerGet(ctx context.Context, httpAddr, path string, timeout time.Duration, v any) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+path, nil)
	if err != nil {
		return 0, err
	}
	if n.cfg.AuthToken != "" {
		req.Header.Set("Authorization", "Bearer "+n.cfg.AuthToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return resp.StatusCode, fmt.Errorf("%s: %s: %w", httpAddr, resp.Status, err)
	}
	return resp.StatusCode, nil
}
