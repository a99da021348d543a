package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/squallhq/squall/client"
)

func (a *app) keysCommand() *cobra.Command {
	var o client.KeysOptions
	var local bool
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "List live keys, across the cluster",
		Long: `List the keys that have a live actor, sorted, with the node and partition
serving each, its applied events and the arrival time of its last event. The
listing covers every node of the cluster unless --local is given.`,
		Example: `  squallctl keys
  squallctl keys --prefix web- --limit 20
  squallctl keys --local -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Limit < 1 {
				return usageError{fmt.Errorf("--limit %d: want at least 1", o.Limit)}
			}
			o.Scope = client.ScopeCluster
			if local {
				o.Scope = client.ScopeNode
			}
			c, err := a.client("")
			if err != nil {
				return err
			}
			ctx, cancel := a.request(cmd.Context())
			defer cancel()
			kl, err := c.Keys(ctx, o)
			if err != nil {
				return fmt.Errorf("keys: %w", err)
			}
			if a.output != outTable {
				return a.printDoc(kl)
			}
			t := newTable(a.out, "KEY", "NODE", "PARTITION", "EVENTS", "LAST EVENT")
			for _, k := range kl.Keys {
				t.row(k.Key, k.Node, strconv.Itoa(int(k.Partition)), strconv.FormatUint(k.EventsApplied, 10), wallTime(k.LastEventAt))
			}
			if err := t.flush(); err != nil {
				return err
			}
			more := ""
			if kl.Truncated {
				more = fmt.Sprintf(", more match (raise --limit %d)", o.Limit)
			}
			fmt.Fprintf(a.out, "%s shown of %d live%s\n", plural(len(kl.Keys), "key"), kl.Live, more)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Prefix, "prefix", "", "only keys that start with this")
	cmd.Flags().IntVar(&o.Limit, "limit", 100, "the most keys listed (the node allows up to 10000 by default)")
	cmd.Flags().BoolVar(&local, "local", false, "only the keys of the node asked (--server), not the whole cluster")
	return cmd
}
