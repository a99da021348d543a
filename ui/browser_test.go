package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/squallhq/squall/api"
	"github.com/squallhq/squall/client"
	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/internal/testproc"
	"github.com/squallhq/squall/internal/testutil"
	"github.com/squallhq/squall/internal/zktest"
	"github.com/squallhq/squall/node"
	"github.com/squallhq/squall/replay"
)

// The console tests drive headless Chromium (Debian's chromium package,
// installed when missing) against real in-process nodes. Each page is
// checked against the figures the node holds, and a screenshot of each is
// written to $SQUALL_SCREENSHOTS, or else ui/testdata/out/ (ignored by git).

const partitions = 8

// startNode starts a memory-only standalone node on random ports.
func startNode(t *testing.T, mod func(*node.Config)) *node.Node {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.HTTPAddr, cfg.NATSAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = ""
	cfg.NodeID = "n1"
	cfg.Partitions = partitions
	if mod != nil {
		mod(&cfg)
	}
	n, err := node.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// send posts evs to n and fails t unless every one is applied.
func send(t *testing.T, n *node.Node, token string, evs ...event.Event) {
	t.Helper()
	var opts []client.Option
	if token != "" {
		opts = append(opts, client.WithToken(token))
	}
	c, err := client.New("http://"+n.HTTPAddr(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Send(ctx, evs...)
	if err != nil || res.Accepted != len(evs) {
		t.Fatalf("send: %+v, %v", res, err)
	}
}

// browser is one tab of a headless Chromium.
type browser struct {
	t   *testing.T
	ctx context.Context
	out string // screenshot folder
}

// newBrowser starts a headless Chromium for t, with a user data folder of
// its own, and returns a tab of it.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	chrome := testproc.NeedCommand(t, "chromium", "chromium")
	out := os.Getenv("SQUALL_SCREENSHOTS")
	if out == "" {
		out = filepath.Join("testdata", "out")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, without a deadline
		t.Fatalf("starting %s: %v", chrome, err)
	}
	return &browser{t: t, ctx: ctx, out: out}
}

// tab returns a new tab of b's browser.
func (b *browser) tab() *browser {
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatal(err)
	}
	return &browser{t: b.t, ctx: ctx, out: b.out}
}

// do runs actions within 20 s, failing the test with the page's text.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v\npage: %s", what, err, b.text())
	}
}

// text returns what the page shows, for failure messages.
func (b *browser) text() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// until waits until the JavaScript expression is true.
func (b *browser) until(what, expr string) {
	b.t.Helper()
	b.do(what, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
}

// eval returns the value of a JavaScript expression.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// screenshot writes the whole page to name in the screenshot folder.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(b.out, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", p)
}

// hash navigates within the console, as a link does (chromedp.Navigate
// would wait for a page load that a new fragment does not make).
func (b *browser) hash(h string) {
	b.t.Helper()
	eval[any](b, `location.hash = `+strconv.Quote(h)+`, null`)
}

// pageReady is true once the page named has rendered its data.
func pageReady(page string) string {
	return `document.getElementById('view').dataset.page === '` + page + `' && document.getElementById('view').dataset.ready === 'true' && document.getElementById('view').dataset.hash === location.hash`
}

// TestConsole drives every page of the console against a node with a rules
// file and real events: cluster, keys (search, pages), key (window, chart,
// recent events, rules, replay), alerts, throughput; by keyboard where a
// user would.
func TestConsole(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a browser")
	}
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(`rules:
  - {name: high-cpu, match: "*.cpu", aggregate: max, over: 1m, op: ">", threshold: 90, severity: page}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, func(c *node.Config) { c.Rules = rulesFile })

	// web-1.cpu: 12 events over 5 one-second buckets, one above 90 (the
	// alert fires); page-0 .. page-6: one event each.
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second).UnixMilli()
	var evs []event.Event
	for i := range 12 {
		v := float64(40 + i)
		if i == 7 {
			v = 95
		}
		evs = append(evs, event.Event{Key: "web-1.cpu", TS: t0 + int64(i)*400, Value: v, ID: "e" + strconv.Itoa(i)})
	}
	for i := range 7 {
		evs = append(evs, event.Event{Key: fmt.Sprintf("page-%d", i), TS: t0, Value: float64(i)})
	}
	send(t, n, "", evs...)

	b := newBrowser(t)
	base := "http://" + n.HTTPAddr() + "/ui/"

	// Cluster: one cell per partition, all this node's; the member ready.
	b.do("cluster page", chromedp.Navigate(base+"#/cluster"))
	b.until("cluster page", pageReady("cluster"))
	if got := eval[int](b, `document.querySelectorAll('#partition-grid .cell').length`); got != partitions {
		t.Fatalf("partition grid: %d cells, want %d", got, partitions)
	}
	if got := eval[int](b, `document.querySelectorAll('#partition-grid .cell[data-owner="n1"]').length`); got != partitions {
		t.Fatalf("partition grid: %d cells owned by n1, want %d", got, partitions)
	}
	if got := eval[string](b, `document.querySelector('#partition-legend').innerText`); !strings.Contains(got, "n1 (8)") {
		t.Fatalf("legend %q", got)
	}
	if got := eval[string](b, `document.querySelector('#members-table tr[data-member="n1"] td.ready').innerText`); got != "ready" {
		t.Fatalf("n1 readiness %q", got)
	}
	if !eval[bool](b, `document.getElementById('moving-none') !== null`) {
		t.Fatalf("handoffs or replays shown on a standalone node\n%s", b.text())
	}
	if got := eval[string](b, `document.getElementById('leader').innerText + '/' + document.getElementById('partition-count').innerText`); got != "n1/8" {
		t.Fatalf("leader/partitions %q", got)
	}
	b.screenshot("cluster.png")

	// Keyboard: Tab to the "Keys" link of the navigation, Enter.
	tabTo(b, `document.activeElement.dataset.page === 'keys'`)
	b.do("Enter on Keys", chromedp.KeyEvent(kb.Enter))
	b.until("keys page by keyboard", pageReady("keys")+` && location.hash === '#/keys'`)
	if got := eval[string](b, `document.activeElement.tagName`); got != "H1" {
		t.Fatalf("after navigating, the focus is on %s, want the page heading", got)
	}
	// Search by keyboard: type a prefix in the search field, Enter.
	b.do("type a prefix", chromedp.Focus(chromedp.CSS("#prefix")), chromedp.KeyEvent("page-"), chromedp.KeyEvent(kb.Enter))
	b.until("search", pageReady("keys")+` && location.hash.includes('prefix=page-')`)
	if got := eval[int](b, `document.querySelectorAll('#keys-table tbody tr').length`); got != 7 {
		t.Fatalf("prefix page-: %d keys listed, want 7", got)
	}
	if got := eval[string](b, `document.getElementById('live-count').innerText`); got != "8" {
		t.Fatalf("live count %q, want 8", got)
	}

	// Pages of 3: 3, 3 and 1 keys, following "Next page" by keyboard.
	b.hash("#/keys?prefix=page-&limit=3")
	var pages [][]string
	for i := 0; ; i++ {
		b.until("keys page", pageReady("keys")+` && document.querySelectorAll('#keys-table tbody tr').length > 0`)
		pages = append(pages, strings.Fields(eval[string](b, `[...document.querySelectorAll('#keys-table a.key-link')].map(a => a.innerText).join(' ')`)))
		if i == 0 {
			b.screenshot("keys.png")
		}
		if !eval[bool](b, `document.getElementById('next-page') !== null`) || i > 3 {
			break
		}
		hash := eval[string](b, `location.hash`)
		b.do("next page", chromedp.Focus(chromedp.CSS("#next-page")), chromedp.KeyEvent(kb.Enter))
		b.until("next page", `location.hash !== `+strconv.Quote(hash))
	}
	if got := fmt.Sprint(pages); got != "[[page-0 page-1 page-2] [page-3 page-4 page-5] [page-6]]" {
		t.Fatalf("pages %s", got)
	}

	// Key: from the key list, by keyboard.
	b.hash("#/keys?prefix=web-")
	b.until("keys", pageReady("keys")+` && document.querySelector('#keys-table a.key-link') !== null`)
	b.do("open the key", chromedp.Focus(chromedp.CSS("#keys-table a.key-link")), chromedp.KeyEvent(kb.Enter))
	b.until("key page", pageReady("key")+` && document.getElementById('events-applied') !== null`)
	if got := eval[string](b, `location.hash`); got != "#/key/web-1.cpu" {
		t.Fatalf("key page at %s", got)
	}
	if got := eval[string](b, `document.getElementById('events-applied').innerText`); got != "12" {
		t.Fatalf("events applied %q, want 12", got)
	}
	// The window row: count 12, max 95.
	row := eval[[]string](b, `[...document.querySelectorAll('#aggregates tbody tr')[0].children].map(c => c.innerText)`)
	if len(row) < 5 || row[0] != "window" || row[1] != "12" || row[4] != "95" {
		t.Fatalf("window row %q", row)
	}
	if got := eval[int](b, `document.querySelectorAll('#aggregates tbody tr').length`); got != 3 {
		t.Fatalf("%d aggregate rows, want the window and 2 sub-windows", got)
	}
	// The chart: one bar and one point per non-empty bucket.
	sr := series(t, n, "web-1.cpu")
	if len(sr.Buckets) != 5 {
		t.Fatalf("series: %d buckets, want 5", len(sr.Buckets))
	}
	for _, sel := range []string{"#count-chart rect.bar", "#value-chart circle.pt"} {
		if got := eval[int](b, `document.querySelectorAll('`+sel+`').length`); got != len(sr.Buckets) {
			t.Fatalf("%s: %d, want %d", sel, got, len(sr.Buckets))
		}
	}
	if got := eval[int](b, `document.querySelectorAll('#recent-table tbody tr').length`); got != 12 {
		t.Fatalf("%d recent events, want 12", got)
	}
	if got := eval[string](b, `document.querySelector('#rules-table tr[data-rule="high-cpu"]').innerText`); !strings.Contains(got, "firing") {
		t.Fatalf("rule row %q", got)
	}
	// Replay, by keyboard: every kept event, equal to the live key.
	b.do("replay", chromedp.Focus(chromedp.CSS("#replay-button")), chromedp.KeyEvent(kb.Enter))
	b.until("replay", `document.getElementById('replay-summary') !== null`)
	if got := eval[string](b, `document.getElementById('replay-summary').innerText`); !strings.HasPrefix(got, "12 events replayed on n1: equal to the live key") {
		t.Fatalf("replay: %q", got)
	}
	if got := eval[int](b, `document.querySelectorAll('#replay-steps tbody tr').length`); got != 12 {
		t.Fatalf("%d replay steps, want 12", got)
	}
	b.screenshot("key.png")

	// Alerts: the firing alert, by keyboard from the navigation.
	tabTo(b, `document.activeElement.dataset.page === 'alerts'`)
	b.do("Enter on Alerts", chromedp.KeyEvent(kb.Enter))
	b.until("alerts page", pageReady("alerts")+` && document.getElementById('alerts-table') !== null`)
	row = eval[[]string](b, `[...document.querySelector('#alerts-table tbody tr').children].map(c => c.innerText)`)
	if len(row) != 7 || row[0] != "high-cpu" || row[1] != "web-1.cpu" || row[2] != "95" || row[3] != "90" || row[4] != "page" ||
		row[5] != time.UnixMilli(t0+7*400).UTC().Format("2006-01-02T15:04:05.000Z") || row[6] != "n1" {
		t.Fatalf("alert row %q", row)
	}
	b.screenshot("alerts.png")
	// The page refreshes itself; the link that has the focus keeps it.
	b.do("focus the alert's key", chromedp.Focus(chromedp.CSS("#alerts-table a")))
	refreshes := eval[string](b, `document.getElementById('view').dataset.refreshes || '0'`)
	b.until("a refresh", `(document.getElementById('view').dataset.refreshes || '0') !== `+strconv.Quote(refreshes))
	if got := eval[string](b, `document.activeElement.getAttribute('href')`); got != "#/key/web-1.cpu" {
		t.Fatalf("after a refresh the focus is on %q, want the key's link", got)
	}

	// Throughput: events posted while the page is shown appear as a rate.
	b.hash("#/throughput")
	b.until("throughput page", pageReady("throughput")+` && document.querySelector('#in-table tr[data-source="http"]') !== null`)
	// A writer posts events until the page shows a rate and its chart.
	stop := writer(t, n, "tp-", t0)
	b.until("a rate of applied events", `parseFloat(document.querySelector('#in-table tr[data-source="http"] td[data-result="applied"]').innerText) > 0 && document.getElementById('rate-chart') !== null`)
	stop()
	b.screenshot("throughput.png")
}

// tabTo presses Tab from the first link of the page (Squall, home) until
// cond holds, at most 20 times.
func tabTo(b *browser, cond string) {
	b.t.Helper()
	eval[any](b, `document.getElementById('home').focus(), null`)
	for range 20 {
		b.do("Tab", chromedp.KeyEvent(kb.Tab))
		if eval[bool](b, cond) {
			return
		}
	}
	b.t.Fatalf("Tab never reached %s\n%s", cond, b.text())
}

// series reads the key's series from the node.
func series(t *testing.T, n *node.Node, key string) *api.KeySeries {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTPAddr() + api.PathActor + key + api.PathActorSeries)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sr api.KeySeries
	if err := json.NewDecoder(resp.Body).Decode(&sr); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET series of %s: %s, %v", key, resp.Status, err)
	}
	return &sr
}

// writer posts an event of one of 20 keys with prefix to n every 50 ms
// until stop is called; stop waits for it to end.
func writer(t *testing.T, n *node.Node, prefix string, ts int64) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			if err := post(n, event.Event{Key: prefix + strconv.Itoa(i%20), TS: ts, Value: 1}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	return func() { close(quit); <-done }
}

// post sends one event to n over HTTP.
func post(n *node.Node, ev event.Event) error {
	body := fmt.Sprintf(`{"key":%q,"ts":%d,"value":%v}`, ev.Key, ev.TS, ev.Value)
	resp, err := http.Post("http://"+n.HTTPAddr()+api.PathEvents, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST %s: %s", body, resp.Status)
	}
	return nil
}

// TestConsoleToken: with --auth-token the console's files load without the
// token; the console asks for it, keeps it in sessionStorage (never in the
// URL), sends it with every data request, and asks again on a 401.
func TestConsoleToken(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a browser")
	}
	const token = "s3cret-console"
	n := startNode(t, func(c *node.Config) { c.AuthToken = token })
	send(t, n, token, event.Event{Key: "k", TS: time.Now().UnixMilli(), Value: 1})
	b := newBrowser(t)
	base := "http://" + n.HTTPAddr() + "/ui/"

	b.do("console", chromedp.Navigate(base+"#/cluster"))
	b.until("the token prompt", `document.getElementById('token-dialog').open && document.activeElement.id === 'token-input'`)
	b.screenshot("token.png")
	// A wrong token: the node answers 401, the prompt comes back saying so.
	b.do("a wrong token", chromedp.KeyEvent("wrong"), chromedp.KeyEvent(kb.Enter))
	b.until("the prompt again", `document.getElementById('token-dialog').open && !document.getElementById('token-error').hidden`)
	b.do("the token", chromedp.KeyEvent(token), chromedp.KeyEvent(kb.Enter))
	b.until("cluster page with the token", pageReady("cluster")+` && document.querySelectorAll('#partition-grid .cell').length === `+strconv.Itoa(partitions))
	if got := eval[string](b, `sessionStorage.getItem('squall.token')`); got != token {
		t.Fatalf("sessionStorage token %q", got)
	}
	if got := eval[string](b, `location.href`); strings.Contains(got, token) {
		t.Fatalf("the token is in the URL %s", got)
	}
	// The token is kept: another page needs no prompt.
	b.hash("#/keys")
	b.until("keys page", pageReady("keys")+` && document.getElementById('live-count').innerText === '1' && !document.getElementById('token-dialog').open`)
	// A token the node no longer takes (it changed): the next request's 401
	// brings the prompt back.
	eval[any](b, `sessionStorage.setItem('squall.token', 'stale'), null`)
	b.until("the prompt after a 401", `document.getElementById('token-dialog').open`)
}

// TestConsoleCluster: three nodes over a real ZooKeeper; the console of
// one shows every member ready, the partition map of the assignment, the
// traffic to its peers, and a key owned by another node, replayed there.
func TestConsoleCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper and three nodes")
	}
	z := zktest.Start(t)
	var nodes []*node.Node
	for i := range 3 {
		nodes = append(nodes, startNode(t, func(c *node.Config) {
			c.ZK, c.Cluster, c.NodeID = z.Addr(), "ui", "n"+strconv.Itoa(i+1)
		}))
	}
	// Every node ready, each owning some partitions.
	testutil.Eventually(t, 30*time.Second, func() bool {
		for _, n := range nodes {
			doc := clusterDoc(t, n)
			if !doc.Ready || len(doc.Members) != 3 || len(doc.Serving) == 0 {
				return false
			}
		}
		return true
	}, "three nodes ready, each serving partitions")
	n1 := nodes[0]
	doc := clusterDoc(t, n1)
	// A key owned by another node than n1, sent through n1.
	key := ""
	for i := 0; key == ""; i++ {
		k := "remote-" + strconv.Itoa(i)
		if doc.Assignment[strconv.Itoa(int(replay.KeyPartition(k, partitions)))] != "n1" {
			key = k
		}
	}
	owner := doc.Assignment[strconv.Itoa(int(replay.KeyPartition(key, partitions)))]
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second).UnixMilli()
	var evs []event.Event
	for i := range 6 {
		evs = append(evs, event.Event{Key: key, TS: t0 + int64(i)*1000, Value: float64(i)})
	}
	send(t, n1, "", evs...)

	b := newBrowser(t)
	base := "http://" + n1.HTTPAddr() + "/ui/"
	b.do("cluster page", chromedp.Navigate(base+"#/cluster"))
	b.until("cluster page", pageReady("cluster")+` && document.querySelectorAll('#members-table td.ready').length === 3`)
	if got := eval[[]string](b, `[...document.querySelectorAll('#members-table td.ready')].map(c => c.innerText)`); fmt.Sprint(got) != "[ready ready ready]" {
		t.Fatalf("readiness %q", got)
	}
	cells := eval[[]string](b, `[...document.querySelectorAll('#partition-grid .cell')].map(c => c.dataset.owner)`)
	if len(cells) != partitions {
		t.Fatalf("%d cells, want %d", len(cells), partitions)
	}
	for p, o := range cells {
		if want := doc.Assignment[strconv.Itoa(p)]; o != want {
			t.Fatalf("cell %d: owner %q, the assignment says %q", p, o, want)
		}
	}
	if got := eval[int](b, `document.querySelectorAll('#partition-legend li').length`); got != 3 {
		t.Fatalf("legend of %d owners, want 3", got)
	}
	// Events routed through n1 while the page refreshes: a rate to a peer.
	stop := writer(t, n1, "flow-", t0)
	b.until("a rate to a peer", `[...document.querySelectorAll('#peers tr[data-peer] td:nth-child(2)')].some(c => parseFloat(c.innerText) > 0)`)
	stop()
	b.screenshot("cluster-3-nodes.png")

	// The key, on n1's console: the owner's state, and the replay run there.
	b.hash("#/key/" + key)
	b.until("key page", pageReady("key")+` && document.getElementById('events-applied') !== null`)
	if got := eval[string](b, `document.getElementById('events-applied').innerText`); got != "6" {
		t.Fatalf("events applied %q, want 6", got)
	}
	if got := eval[int](b, `document.querySelectorAll('#count-chart rect.bar').length`); got != 6 {
		t.Fatalf("%d bars, want 6", got)
	}
	b.do("replay", chromedp.Focus(chromedp.CSS("#replay-button")), chromedp.KeyEvent(kb.Enter))
	b.until("replay", `document.getElementById('replay-summary') !== null`)
	if got, want := eval[string](b, `document.getElementById('replay-summary').innerText`), "6 events replayed on "+owner+": equal to the live key"; got != want {
		t.Fatalf("replay %q, want %q", got, want)
	}
	b.screenshot("key-on-another-node.png")
}

// clusterDoc reads n's /debug/cluster.
func clusterDoc(t *testing.T, n *node.Node) *api.Cluster {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTPAddr() + api.PathCluster)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc api.Cluster
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	return &doc
}
