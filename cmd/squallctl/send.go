package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/client"
	"github.com/squallhq/squall/event"
)

// Formats of send's input (--format).
const (
	formatAuto = "auto"
	formatJSON = "json" // a JSON object, a JSON array or NDJSON
	formatCSV  = "csv"
)

type sendOptions struct {
	file        string
	format      string
	batch       int
	natsURL     string
	natsSubject string
}

func (a *app) sendCommand() *cobra.Command {
	var o sendOptions
	cmd := &cobra.Command{
		Use:   "send [KEY=VALUE[@TS]]...",
		Short: "Send events over HTTP or NATS and print what the node did with them",
		Long: `Send events given as arguments (KEY=VALUE, or KEY=VALUE@TS with TS in epoch
milliseconds or RFC 3339), or read from -f FILE or, with no argument, from
standard input: NDJSON, a JSON array or object (the fields of POST /v1/events),
or CSV with the columns key,ts,value (a header line is optional, an empty ts
is the time of sending).

Events go in batches of --batch; each is retried as the Go client does. The
answer counts the accepted events (with a memory-only node, how many of those
were late or duplicates) and lists each rejected one with its index in the
input (counting from 0) and the reason. The exit status is 1 when any event
was rejected.`,
		Example: `  squallctl send web-1.cpu=40 web-1.cpu=60@1764064801000
  squallctl send 'db-3.disk./var=71.5@2025-11-25T10:00:00Z'
  squallctl send -f events.ndjson
  printf 'key,ts,value\nweb-1.cpu,,42\n' | squallctl send --format csv
  squallctl send --nats nats://127.0.0.1:4222 web-2.cpu=12`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.send(cmd.Context(), args, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "file", "f", "", `read events from FILE ("-": standard input)`)
	f.StringVar(&o.format, "format", formatAuto, "input format: auto (JSON when it starts with { or [, else CSV; CSV for a .csv file), json or csv")
	f.IntVar(&o.batch, "batch", 1000, "events per request")
	f.StringVar(&o.natsURL, "nats", "", "send over NATS at this URL (a request on --nats-subject) instead of HTTP")
	f.StringVar(&o.natsSubject, "nats-subject", "squall.events", "the node's NATS subject for events")
	return cmd
}

// input is what send read: the valid events, their indexes in the input,
// the input's size, and the events rejected before sending.
type input struct {
	events   []event.Event
	index    []int
	total    int
	rejected []event.Rejection
}

func (a *app) send(ctx context.Context, args []string, o sendOptions) error {
	if o.batch < 1 {
		return usageError{fmt.Errorf("--batch %d: want at least 1", o.batch)}
	}
	if o.format != formatAuto && o.format != formatJSON && o.format != formatCSV {
		return usageError{fmt.Errorf("--format %q: want auto, json or csv", o.format)}
	}
	var in *input
	var err error
	if len(args) > 0 {
		if o.file != "" {
			return usageError{errors.New("give events as arguments or with -f, not both")}
		}
		in, err = parseArgs(args, time.Now())
	} else {
		in, err = a.readEvents(o)
	}
	if err != nil {
		return err
	}
	var copts []client.Option
	if o.natsURL != "" {
		nc, err := nats.Connect(o.natsURL, nats.Name("squallctl"), nats.Timeout(a.timeout))
		if err != nil {
			return fmt.Errorf("nats %s: %w", o.natsURL, err)
		}
		defer nc.Close()
		copts = append(copts, client.WithNATS(nc, o.natsSubject))
	}
	c, err := a.client("", copts...)
	if err != nil {
		return err
	}
	sum := api.IngestResponse{Rejected: append([]event.Rejection{}, in.rejected...)}
	progress := isTerminal(a.errOut) && len(in.events) > o.batch
	var sendErr error
	for start := 0; start < len(in.events); start += o.batch {
		end := min(start+o.batch, len(in.events))
		rctx, cancel := a.request(ctx)
		res, err := c.Send(rctx, in.events[start:end]...)
		cancel()
		if se, ok := errors.AsType[*client.StatusError](err); ok && se.Response != nil &&
			se.Response.Accepted+len(se.Response.Rejected)+se.Response.RejectedOmitted >= end-start {
			res, err = se.Response, nil // the node decided on each event: the answer says how
		}
		if err != nil {
			sendErr = fmt.Errorf("stopped at event %d: %d of %s not sent: %w", in.index[start], len(in.events)-start, plural(in.total, "event"), err)
			break
		}
		mergeAnswer(&sum, res, in.index[start:end])
		if progress {
			fmt.Fprintf(a.errOut, "\rsent %d/%d events", end, len(in.events))
		}
	}
	if progress {
		fmt.Fprintln(a.errOut)
	}
	sort.SliceStable(sum.Rejected, func(i, j int) bool { return sum.Rejected[i].Index < sum.Rejected[j].Index })
	if err := a.printAnswer(&sum, in.total); err != nil {
		return err
	}
	if sendErr != nil {
		return sendErr
	}
	if n := len(sum.Rejected) + sum.RejectedOmitted; n > 0 {
		return fmt.Errorf("%d of %s rejected", n, plural(in.total, "event"))
	}
	return nil
}

// mergeAnswer adds res, the answer to a batch whose events have the input
// indexes index, to sum.
func mergeAnswer(sum *api.IngestResponse, res *api.IngestResponse, index []int) {
	sum.Accepted += res.Accepted
	sum.RejectedOmitted += res.RejectedOmitted
	for _, p := range []struct{ sum, n **int }{{&sum.Late, &res.Late}, {&sum.Duplicate, &res.Duplicate}} {
		if *p.n != nil {
			if *p.sum == nil {
				*p.sum = new(int)
			}
			**p.sum += **p.n
		}
	}
	for _, r := range res.Rejected {
		if r.Index >= 0 && r.Index < len(index) {
			r.Index = index[r.Index]
		} else {
			r.Index = -1
		}
		sum.Rejected = append(sum.Rejected, r)
	}
	if res.Error != "" {
		sum.Error = res.Error
	}
}

func (a *app) printAnswer(res *api.IngestResponse, total int) error {
	if a.output != outTable {
		return a.printDoc(res)
	}
	t := newTable(a.out)
	t.row("events:", strconv.Itoa(total))
	t.row("accepted:", strconv.Itoa(res.Accepted))
	count := func(n *int) string {
		if n == nil {
			return "not known yet (the node stores events in its log first)"
		}
		return strconv.Itoa(*n)
	}
	t.row("  late:", count(res.Late))
	t.row("  duplicate:", count(res.Duplicate))
	t.row("rejected:", strconv.Itoa(len(res.Rejected)+res.RejectedOmitted))
	if err := t.flush(); err != nil {
		return err
	}
	for _, r := range res.Rejected {
		at := "event " + strconv.Itoa(r.Index)
		if r.Index < 0 {
			at = "an event"
		}
		field := ""
		if r.Field != "" {
			field = r.Field + ": "
		}
		retry := ""
		if r.Retry {
			retry = " (may succeed if sent again)"
		}
		fmt.Fprintf(a.out, "  %s: %s%s%s\n", at, field, r.Reason, retry)
	}
	if res.RejectedOmitted > 0 {
		fmt.Fprintf(a.out, "  and %d more not listed\n", res.RejectedOmitted)
	}
	if res.Error != "" {
		fmt.Fprintf(a.out, "error: %s\n", res.Error)
	}
	return nil
}

// parseArgs reads KEY=VALUE[@TS] arguments; an event without TS gets now.
func parseArgs(args []string, now time.Time) (*input, error) {
	in := &input{total: len(args)}
	for i, arg := range args {
		eq := strings.LastIndexByte(arg, '=')
		if eq < 0 {
			return nil, usageError{fmt.Errorf("%q: want KEY=VALUE or KEY=VALUE@TS", arg)}
		}
		ev := event.Event{Key: arg[:eq], TS: now.UnixMilli()}
		val := arg[eq+1:]
		if at := strings.LastIndexByte(val, '@'); at >= 0 {
			ts, err := parseTS(val[at+1:])
			if err != nil {
				return nil, usageError{fmt.Errorf("%q: %w", arg, err)}
			}
			ev.TS, val = ts, val[:at]
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return nil, usageError{fmt.Errorf("%q: value %q is not a number", arg, val)}
		}
		ev.Value = v
		in.events = append(in.events, ev)
		in.index = append(in.index, i)
	}
	return in, nil
}

// parseTS reads epoch milliseconds or an RFC 3339 time.
func parseTS(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("ts %q: want epoch milliseconds or RFC 3339", s)
	}
	return t.UnixMilli(), nil
}

// readEvents reads -f FILE, or standard input.
func (a *app) readEvents(o sendOptions) (*input, error) {
	var r io.Reader = a.in
	name := "standard input"
	if o.file == "" && isTerminal(a.in) {
		return nil, usageError{errors.New("no events: give them as KEY=VALUE arguments, with -f FILE, or on standard input")}
	}
	if o.file != "" && o.file != "-" {
		f, err := os.Open(o.file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r, name = f, o.file
	}
	body, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, fmt.Errorf("%s: no events", name)
	}
	format := o.format
	if format == formatAuto {
		format = formatCSV
		if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') && !strings.HasSuffix(o.file, ".csv") {
			format = formatJSON
		}
	}
	now := time.Now()
	var in *input
	if format == formatCSV {
		in, err = parseCSV(body, now)
	} else {
		in, err = parseJSON(body, now)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if in.total == 0 {
		return nil, fmt.Errorf("%s: no events", name)
	}
	return in, nil
}

// parseJSON decodes a JSON object, a JSON array or NDJSON with the node's
// decoder: the events it would reject are rejected here, with the same
// reasons, and not sent.
func parseJSON(body []byte, now time.Time) (*input, error) {
	var d event.Decoder
	evs, rej, err := d.Decode(body, event.FormatAuto, event.Options{Now: now.UnixMilli()}, nil, nil)
	if errors.Is(err, event.ErrEmpty) {
		return &input{}, nil
	}
	if err != nil {
		return nil, err
	}
	in := &input{events: evs, rejected: rej, total: len(evs) + len(rej)}
	bad := make(map[int]bool, len(rej))
	for _, r := range rej {
		bad[r.Index] = true
	}
	for i := 0; i < in.total; i++ {
		if !bad[i] {
			in.index = append(in.index, i)
		}
	}
	return in, nil
}

// parseCSV reads key,ts,value records; the first may be that header. A
// record that cannot be read is rejected with its field; an empty ts is now.
func parseCSV(body []byte, now time.Time) (*input, error) {
	r := csv.NewReader(bytes.NewReader(body))
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	in := &input{}
	for first := true; ; first = false {
		rec, err := r.Read()
		if err == io.EOF {
			return in, nil
		}
		if err != nil {
			return nil, err
		}
		if first && len(rec) == 3 && strings.EqualFold(rec[0], "key") && strings.EqualFold(rec[1], "ts") && strings.EqualFold(rec[2], "value") {
			continue
		}
		i := in.total
		in.total++
		reject := func(field, reason string) {
			in.rejected = append(in.rejected, event.Rejection{Index: i, Field: field, Reason: reason})
		}
		if len(rec) != 3 {
			reject("", fmt.Sprintf("%d fields: want 3, key,ts,value", len(rec)))
			continue
		}
		ev := event.Event{Key: rec[0], TS: now.UnixMilli()}
		if rec[1] != "" {
			ts, err := parseTS(rec[1])
			if err != nil {
				reject("ts", err.Error())
				continue
			}
			ev.TS = ts
		}
		v, err := strconv.ParseFloat(rec[2], 64)
		if err != nil {
			reject("value", fmt.Sprintf("%q is not a number", rec[2]))
			continue
		}
		ev.Value = v
		in.events = append(in.events, ev)
		in.index = append(in.index, i)
	}
}
