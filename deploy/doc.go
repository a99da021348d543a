// Package deploy holds no code: its tests check the files beside them, the
// ones an operator installs — the Prometheus alerting rules and their unit
// test (prometheus/), the Grafana dashboard (grafana/), the systemd unit
// (systemd/) and the example configuration (config.example.yaml) — with
// the tools that read them (promtool, systemd-analyze) and the node's own
// config loader.
package deploy
