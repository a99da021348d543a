// Package ui is the web console every node serves at /ui/: the cluster
// (members and their readiness, leader, the partition map, traffic per
// peer, partitions moving or replaying), the live keys, one key (its
// window, a chart of its buckets, its recent events, alert states and a
// replay), the firing alerts and the node's throughput.
//
// The console is plain HTML, CSS and JavaScript embedded in the binary:
// nothing is built with a JavaScript toolchain and nothing is fetched from
// elsewhere at run time. It reads the node's HTTP API (package api), which
// routes key reads to the key's owner, so it works alike on any node of a
// cluster. Its files hold no data and are served without the token; with
// --auth-token the console asks for the token once, keeps it in the
// browser's sessionStorage and sends it as "Authorization: Bearer" with
// every data request, asking again on a 401.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed assets
var assets embed.FS

// csp allows the console's own files and requests to its own node only.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the console's files under /ui/ (index.html at /ui/). It
// is safe for concurrent use.
func Handler() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // unreachable: the directory is embedded
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache") // revalidated: a new binary serves new files
		files.ServeHTTP(w, r)
	})
}
