package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/client"
	"github.com/squallhq/squall/window"
)

func (a *app) getCommand() *cobra.Command {
	var watch bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Show a key's state: its window and sub-windows, alert states, recent events",
		Long: `Show the state of a key's actor, on whichever node owns it: the aggregates of
the whole window and of each sub-window (count, sum, min, max, mean, last,
rate in events per second, p50/p95/p99), the state of each alert rule that
matches the key, and the key's most recent events.

With -o json the node's key-state document is printed as the node sent it.
With --watch the state is shown again every --interval until interrupted;
with -o json, one document per line.`,
		Example: `  squallctl get web-1.cpu
  squallctl get 'db-3.disk./var' -o json
  squallctl get web-1.cpu --watch --interval 1s`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if interval <= 0 {
				return usageError{fmt.Errorf("--interval %v: want a positive duration", interval)}
			}
			if !watch {
				return a.get(cmd.Context(), a.out, args[0])
			}
			return a.watchKey(cmd.Context(), args[0], interval)
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "show the state again every --interval until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often --watch refreshes")
	return cmd
}

// get prints key's state to w.
func (a *app) get(ctx context.Context, w io.Writer, key string) error {
	c, err := a.client("")
	if err != nil {
		return err
	}
	ctx, cancel := a.request(ctx)
	defer cancel()
	raw, err := c.GetRaw(ctx, key)
	if errors.Is(err, client.ErrNotFound) {
		return fmt.Errorf("key %q has no live actor: no event yet, or none within the node's --idle-ttl", key)
	}
	if err != nil {
		return fmt.Errorf("get %q: %w", key, err)
	}
	switch a.output {
	case outJSON:
		_, err = w.Write(raw)
		return err
	case outYAML:
		y, err := jsonToYAML(raw)
		if err != nil {
			return err
		}
		_, err = w.Write(y)
		return err
	}
	var st api.KeyState
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("get %q: %w", key, err)
	}
	return writeKeyState(w, &st)
}

// watchKey prints key's state every interval until ctx is done; on a
// terminal, each time on a cleared screen.
func (a *app) watchKey(ctx context.Context, key string, interval time.Duration) error {
	clear := isTerminal(a.out)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		var b bytes.Buffer
		if clear {
			b.WriteString("\033[H\033[2J")
		}
		switch a.output {
		case outTable:
			fmt.Fprintf(&b, "%s  every %v\n\n", time.Now().UTC().Format(time.RFC3339), interval)
		case outYAML:
			b.WriteString("---\n")
		}
		if err := a.get(ctx, &b, key); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if a.output != outTable {
				return err // a stream of documents has no room for it
			}
			fmt.Fprintf(&b, "%v\n", err)
		}
		if !clear && a.output == outTable {
			b.WriteString("\n")
		}
		if _, err := a.out.Write(b.Bytes()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// writeKeyState prints st as tables.
func writeKeyState(w io.Writer, st *api.KeyState) error {
	t := newTable(w)
	t.row("key", st.Key)
	t.row("node", st.Node)
	t.row("partition", strconv.Itoa(int(st.Partition)))
	t.row("activated", wallTime(st.ActivatedAt))
	t.row("last event", wallTime(st.LastEventAt)+" (arrival)")
	t.row("events", fmt.Sprintf("%d applied, %d late, %d duplicate", st.EventsApplied, st.LateDropped, st.DuplicatesDropped))
	if len(st.Tags) > 0 {
		t.row("tags", tagString(st.Tags))
	}
	if err := t.flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	t = newTable(w, "WINDOW", "COUNT", "SUM", "MIN", "MAX", "MEAN", "LAST", "RATE/S", "P50", "P95", "P99", "FROM", "TO")
	aggRow(t, "all", &st.Window)
	names := make([]string, 0, len(st.Subwindows))
	for n := range st.Subwindows {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return durationOf(names[i]) < durationOf(names[j]) })
	for _, n := range names {
		ag := st.Subwindows[n]
		aggRow(t, n, &ag)
	}
	if err := t.flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	if len(st.Rules) == 0 {
		fmt.Fprintln(w, "ALERTS: no rule matches the key")
	} else {
		t = newTable(w, "RULE", "KIND", "STATE", "SEVERITY", "VALUE", "SINCE")
		for _, r := range st.Rules {
			v, since := "-", "-"
			if r.Value != nil {
				v = num(*r.Value)
			}
			if r.Since != nil {
				since = wallTime(*r.Since)
			}
			t.row(r.Rule, r.Kind, r.State, dash(r.Severity), v, since)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}

	fmt.Fprintln(w)
	if len(st.Recent) == 0 {
		fmt.Fprintln(w, "RECENT EVENTS: none kept")
		return nil
	}
	fmt.Fprintf(w, "RECENT EVENTS (%d, oldest first)\n", len(st.Recent))
	t = newTable(w, "TS", "VALUE", "ID", "TAGS")
	for _, e := range st.Recent {
		t.row(msTime(e.TS), num(e.Value), dash(e.ID), dash(tagString(e.Tags)))
	}
	return t.flush()
}

func aggRow(t *table, name string, ag *window.Aggregates) {
	if ag.Count == 0 {
		t.row(name, "0", "-", "-", "-", "-", "-", "0", "-", "-", "-", "-", "-")
		return
	}
	t.row(name, strconv.FormatUint(ag.Count, 10), num(ag.Sum), num(ag.Min), num(ag.Max), num(ag.Mean),
		num(ag.Last.Value), strconv.FormatFloat(ag.Rate, 'g', 4, 64), num(ag.P50), num(ag.P95), num(ag.P99), msTime(ag.FromTS), msTime(ag.ToTS))
}

// durationOf parses a sub-window name ("1m", "30s", "500ms").
func durationOf(name string) time.Duration {
	d, err := time.ParseDuration(name)
	if err != nil {
		return 1<<63 - 1 // an unknown name sorts last
	}
	return d
}

func tagString(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + tags[k]
	}
	return strings.Join(keys, ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
