package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/client"
)

// alertValue formats an alert's value, "-" when null.
func alertValue(d *api.Alert) string {
	if d.Value == nil {
		return "-"
	}
	return num(*d.Value)
}

func (a *app) alertsCommand() *cobra.Command {
	var local bool
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "List the alerts firing now, across the cluster; follow transitions with \"alerts tail\"",
		Long: `List the alerts firing now on every node of the cluster (on the node asked
alone with --local): the node serving the key, the key, the rule, its
severity, the aggregate when it fired and the threshold, and when the alert
started. The exit status is 1 when a node did not answer.`,
		Example: `  squallctl alerts
  squallctl alerts -o json
  squallctl alerts tail --nats nats://127.0.0.1:4222`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			scope := client.ScopeCluster
			if local {
				scope = client.ScopeNode
			}
			c, err := a.client("")
			if err != nil {
				return err
			}
			ctx, cancel := a.request(cmd.Context())
			defer cancel()
			doc, err := c.Alerts(ctx, scope)
			if err != nil {
				return fmt.Errorf("alerts: %w", err)
			}
			if a.output != outTable {
				if err := a.printDoc(doc); err != nil {
					return err
				}
			} else if err := a.writeFiring(doc.Alerts); err != nil {
				return err
			}
			if len(doc.Errors) > 0 {
				nodes := make([]string, 0, len(doc.Errors))
				for id, msg := range doc.Errors {
					nodes = append(nodes, id+": "+msg)
				}
				sort.Strings(nodes)
				return fmt.Errorf("alerts: %d nodes did not answer, their alerts are missing: %s", len(nodes), strings.Join(nodes, "; "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&local, "local", false, "only the alerts of the node asked (--server), not the whole cluster")
	cmd.AddCommand(a.alertsTailCommand())
	return cmd
}

func (a *app) writeFiring(alerts []api.FiringAlert) error {
	if len(alerts) == 0 {
		fmt.Fprintln(a.out, "no alert is firing")
		return nil
	}
	t := newTable(a.out, "NODE", "KEY", "RULE", "SEVERITY", "VALUE", "THRESHOLD", "SINCE")
	for _, f := range alerts {
		var d api.Alert
		if err := json.Unmarshal(f.Alert, &d); err != nil {
			return fmt.Errorf("alert document %s: %w", f.Alert, err)
		}
		t.row(f.Node, d.Key, d.Rule, dash(d.Severity), alertValue(&d), num(d.Threshold), msTime(d.StartedAt))
	}
	return t.flush()
}

func (a *app) alertsTailCommand() *cobra.Command {
	var natsURL, subject string
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Follow alert transitions over NATS, one line per transition",
		Long: `Subscribe to the alert subjects over NATS (<subject>.>, squall.alerts.> by
default) and print one line per transition, to firing or resolved, until
interrupted: the event time of the transition, the state, the rule, the key,
the aggregate, the threshold, the severity and the labels. -o json prints each
alert document as published, one per line. The NATS URL may carry
credentials (nats://user:password@host:4222, nats://token@host:4222).`,
		Example: `  squallctl alerts tail
  squallctl alerts tail --nats nats://10.0.0.5:4222 -o json | jq .`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tailAlerts(cmd.Context(), natsURL, subject)
		},
	}
	cmd.Flags().StringVar(&natsURL, "nats", envOr(envNATS, defaultNATS), "the NATS server the nodes publish alerts to (env "+envNATS+")")
	cmd.Flags().StringVar(&subject, "subject", "squall.alerts", "the nodes' alert subject prefix (their --alerts-subject)")
	return cmd
}

func (a *app) tailAlerts(ctx context.Context, natsURL, subject string) error {
	nc, err := nats.Connect(natsURL, nats.Name("squallctl alerts tail"), nats.Timeout(a.timeout), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("nats %s: %w", natsURL, err)
	}
	defer nc.Close()
	msgs := make(chan *nats.Msg, 1024)
	sub, err := nc.ChanSubscribe(subject+".>", msgs)
	if err != nil {
		return fmt.Errorf("subscribe %s.>: %w", subject, err)
	}
	defer sub.Unsubscribe()
	if err := nc.FlushTimeout(a.timeout); err != nil {
		return fmt.Errorf("subscribe %s.>: %w", subject, err)
	}
	fmt.Fprintf(a.errOut, "following %s.> on %s\n", subject, natsURL)
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			if err := a.printTransition(m); err != nil {
				return err
			}
		}
	}
}

func (a *app) printTransition(m *nats.Msg) error {
	switch a.output {
	case outJSON:
		_, err := fmt.Fprintf(a.out, "%s\n", m.Data)
		return err
	case outYAML:
		y, err := jsonToYAML(m.Data)
		if err != nil {
			return fmt.Errorf("alert on %s: %w", m.Subject, err)
		}
		_, err = fmt.Fprintf(a.out, "---\n%s", y)
		return err
	}
	var d api.Alert
	if err := json.Unmarshal(m.Data, &d); err != nil {
		fmt.Fprintf(a.out, "unreadable alert on %s: %v\n", m.Subject, err)
		return nil
	}
	line := fmt.Sprintf("%s  %-8s  %s  %s  value=%s threshold=%s", msTime(d.At), d.State, d.Rule, d.Key, alertValue(&d), num(d.Threshold))
	if d.Severity != "" {
		line += " severity=" + d.Severity
	}
	if len(d.Labels) > 0 {
		line += " labels=" + tagString(d.Labels)
	}
	_, err := fmt.Fprintln(a.out, line)
	return err
}
