// Package api holds the JSON documents of Squall's HTTP API, shared by the
// server and the Go client.
//
// openapi.yaml, in this package's directory, is the API's reference
// (OpenAPI 3.1): every path, parameter, status and body schema. The
// package's tests check it against running nodes; docs/api.md is the guide.
package api

import (
	"encoding/json"
	"sort"
	"time"

	"github.com/squallhq/squall/event"
	"github.com/squallhq/squall/window"
)

// Paths of the HTTP API.
const (
	PathEvents = "/v1/events"
	PathActors = "/debug/actors"
	PathActor  = "/debug/actors/" // followed by the percent-encoded key
	// PathActorEvents follows PathActor and the percent-encoded key: the
	// key's kept events (KeyEvents). A key that itself ends in "/events"
	// must have its "/" sent as %2F (url.PathEscape does).
	PathActorEvents = "/events"
	// PathActorSeries follows PathActor and the percent-encoded key: the
	// per-bucket statistics of the key's window (KeySeries). As with
	// PathActorEvents, a key ending in "/series" or "/replay" must have
	// its "/" sent as %2F.
	PathActorSeries = "/series"
	// PathActorReplay follows PathActor and the percent-encoded key: a
	// replay of the key's kept events on its owner, with its differences
	// from the live key (KeyReplay).
	PathActorReplay = "/replay"
	PathCluster     = "/debug/cluster"
	// PathMembers is every member's readiness and partitions in motion,
	// asked by the node (Members).
	PathMembers = "/debug/cluster/members"
	// PathUI is the web console, served by every node.
	PathUI      = "/ui/"
	PathAlerts  = "/debug/alerts"
	PathRules   = "/debug/rules"
	PathMetrics = "/metrics"
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
	PathPprof   = "/debug/pprof/"
)

// IngestResponse answers POST /v1/events (and a NATS request on the events
// subject): what became of each event of the body.
//
// Every event is either accepted or rejected. Late and duplicate events are
// accepted (and counted on the key); invalid ones are rejected for good;
// events shed (the node holds --max-keys keys) or failed on the server's
// side (a handler failed, the log or the key's owner was unavailable) are
// rejected with Retry set: sending exactly those again may succeed.
//
// Over HTTP the status says which case the body is in: 202 when no event
// needs a retry, 429 (with Retry-After) when some were shed, 503 (with
// Retry-After) when some failed on the server's side and none was shed,
// 400 when none was accepted and none may be retried.
type IngestResponse struct {
	// Accepted counts the events the node took: applied, late and
	// duplicate ones (when the node writes to Kafka first, stored in the
	// log).
	Accepted int `json:"accepted"`
	// Late counts the accepted events found behind their key's window
	// (dropped, counted on the key), Duplicate those whose id the key had
	// seen. Both are nil (omitted, not 0) when the node does not know them:
	// when it writes to Kafka first, the key actors apply the events later.
	Late      *int `json:"late,omitempty"`
	Duplicate *int `json:"duplicate,omitempty"`
	// Rejected lists the events not accepted, by index in the body. The
	// index is -1 when more rejections than listed make it unknown; such an
	// event cannot be sent again on its own.
	Rejected []event.Rejection `json:"rejected"`
	// RejectedOmitted counts rejected events left out of Rejected, which
	// lists at most the first 1,000.
	RejectedOmitted int `json:"rejected_omitted,omitempty"`
	// Error is set when the body as a whole could not be used, or when no
	// event could be submitted (then each one is listed with Retry set).
	Error string `json:"error,omitempty"`
}

// Reasons of the rejections a retry may succeed on (event.Rejection.Retry).
const (
	// ReasonShed: the node holds its maximum number of live keys.
	ReasonShed = "shed: node at --max-keys live keys"
	// ReasonFailed: the node failed to apply the event (its handler
	// failed, or its key's owner could not be reached).
	ReasonFailed = "failed on the server: retry later"
	// ReasonNotStored: the node could not write the event to its log
	// (Kafka unavailable).
	ReasonNotStored = "not stored: the log is unavailable, retry later"
)

// KeyState is the key-state document of GET /debug/actors/{key}.
type KeyState struct {
	Key               string                       `json:"key"`
	Node              string                       `json:"node"`
	Partition         int32                        `json:"partition"`
	ActivatedAt       time.Time                    `json:"activated_at"`
	LastEventAt       time.Time                    `json:"last_event_at"`
	EventsApplied     uint64                       `json:"events_applied"`
	LateDropped       uint64                       `json:"late_dropped"`
	DuplicatesDropped uint64                       `json:"duplicates_dropped"`
	Window            window.Aggregates            `json:"window"`
	Subwindows        map[string]window.Aggregates `json:"subwindows"`
	Tags              map[string]string            `json:"tags,omitempty"`
	Rules             []RuleState                  `json:"rules"`
	Recent            []event.Event                `json:"recent"`
}

// KeyEvents is the document of GET /debug/actors/{key}/events: the last
// events a key's actor received, with what became of each — what a replay
// of the key needs.
//
// A key actor keeps its last Kept events (--recent-events, default 32) of
// any outcome, in the order it received them, with their ids and tags.
// While Complete, they are every event behind the key's state, and applying
// them in order to a fresh key actor of the same node rebuilds that state
// (package replay); beyond, only the log (Kafka or JetStream) has them all.
type KeyEvents struct {
	Key       string `json:"key"`
	Node      string `json:"node"`
	Partition int32  `json:"partition"`
	// Kept is the most events a key actor keeps (--recent-events).
	Kept int `json:"kept"`
	// Shape is the node's window shape and Partitions its number of key
	// partitions: what a replay builds its key actor with.
	Shape      WindowShape `json:"shape"`
	Partitions int         `json:"partitions"`
	// Received counts the events the key's actor received, of any outcome
	// (events_applied + late_dropped + duplicates_dropped of its state).
	Received uint64 `json:"received"`
	// Complete is true when Events holds all Received events.
	Complete bool `json:"complete"`
	// Restore is an offset (Kafka offset, or JetStream stream sequence)
	// at or before the oldest log record whose event is in the key's
	// window — before it by less than a fifteenth of the retention's worth
	// of the key's records: a replay of the key's log partition from there
	// rebuilds its window. -1 when
	// the node has no log (--data-dir "" without Kafka).
	Restore int64 `json:"restore"`
	// Events are the kept events, oldest first.
	Events []KeptEvent `json:"events"`
}

// KeySeries is the document of GET /debug/actors/{key}/series: the
// statistics of every non-empty bucket of the key's window, oldest first,
// what a chart of the key over the retention draws. In a cluster the key's
// owner answers. 404 when the key has no live actor.
type KeySeries struct {
	Key       string `json:"key"`
	Node      string `json:"node"`
	Partition int32  `json:"partition"`
	// ResolutionMs and RetentionMs are the node's --resolution and
	// --retention: a bucket's length and the window's.
	ResolutionMs int64 `json:"resolution_ms"`
	RetentionMs  int64 `json:"retention_ms"`
	// Buckets are the non-empty buckets, oldest first: ts (the bucket's
	// start, epoch ms), count, sum, min, max and mean, all exact.
	Buckets []window.BucketStats `json:"buckets"`
}

// KeyReplay is the document of GET /debug/actors/{key}/replay: the key's
// kept events (KeyEvents) replayed, on the key's owner, in a fresh key
// actor of the owner's window shape, partitions and alert rules (package
// replay), one step per event, and the differences between the replayed
// state and the live one.
//
// When the owner no longer keeps every event the key received (more than
// --recent-events), nothing is replayed: Complete is false, Error says why
// and the answer is 409; the key's log has its events (squallctl replay
// --from-log). 404 when the key has no live actor.
type KeyReplay struct {
	Key       string `json:"key"`
	Node      string `json:"node"`
	Partition int32  `json:"partition"`
	// Complete is true when the kept events are every event the key
	// received, and so were replayed.
	Complete bool `json:"complete"`
	// Kept and Received are those of KeyEvents.
	Kept     int    `json:"kept"`
	Received uint64 `json:"received"`
	// Steps are the replayed events, in the order the key received them,
	// each with its outcome, the aggregates after it and the alert
	// transitions it caused.
	Steps []ReplayStep `json:"steps"`
	// State is the replayed key's final state document; null when nothing
	// was replayed.
	State *KeyState `json:"state"`
	// Diff lists the differences between the live state and the replayed
	// one, one line each ("window.max: live 95, replay 90"), leaving out
	// wall-clock fields; empty when they agree.
	Diff []string `json:"diff"`
	// Error says why nothing was replayed.
	Error string `json:"error,omitempty"`
}

// ReplayStep is one event of a replay: what it did and the alert
// transitions it caused.
type ReplayStep struct {
	ReplayEvent
	// Transitions are the alert transitions the event caused.
	Transitions []Alert `json:"transitions,omitempty"`
}

// ReplayEvent is one event of a replay and what it did (package replay's
// Step has it too).
type ReplayEvent struct {
	// Index is the event's position among the key's events, from 0.
	Index int `json:"index"`
	// Offset is the log offset or sequence of its record; -1 when none.
	Offset  int64             `json:"offset"`
	TS      int64             `json:"ts"`
	Value   float64           `json:"value"`
	ID      string            `json:"id,omitempty"`
	Tags    map[string]string `json:"tags,omitempty"`
	Outcome string            `json:"outcome"` // "applied", "late" or "duplicate"
	// Window and Subwindows are the key's aggregates after the event.
	Window     window.Aggregates            `json:"window"`
	Subwindows map[string]window.Aggregates `json:"subwindows"`
}

// WindowShape is a node's window shape (--retention, --resolution,
// --subwindows), in milliseconds.
type WindowShape struct {
	RetentionMs  int64   `json:"retention_ms"`
	ResolutionMs int64   `json:"resolution_ms"`
	SubwindowsMs []int64 `json:"subwindows_ms"`
}

// KeptEvent is one event a key actor kept: the event as the key applied it
// (ts as clamped by the window) and its outcome.
type KeptEvent struct {
	event.Event
	// Outcome is "applied", "late" or "duplicate".
	Outcome string `json:"outcome"`
}

// RuleState is one alert rule's state on a key.
type RuleState struct {
	Rule     string `json:"rule"`
	Kind     string `json:"kind"`  // "threshold" or "absent"
	State    string `json:"state"` // "inactive", "pending" or "firing"
	Severity string `json:"severity,omitempty"`
	// Value is a threshold rule's aggregate now; null for an absent rule
	// or an empty window.
	Value *float64 `json:"value"`
	// Since is when the pending or firing alert started (event time for a
	// threshold rule, wall time for an absent rule); omitted when inactive.
	Since *time.Time `json:"since,omitempty"`
	// LastSeen is, for an absent rule, the wall time of the key's last event.
	LastSeen *time.Time `json:"last_seen,omitempty"`
}

// Rules is the document of GET /debug/rules: the alert rules in force on
// the node (its --rules file as last loaded, at start or on SIGHUP).
type Rules struct {
	Node string `json:"node"`
	// File is the --rules file; empty when the node runs no rules.
	File string `json:"file"`
	// YAML is the file's text as the node parsed it.
	YAML string `json:"yaml"`
	// Count is the number of rules.
	Count int `json:"count"`
}

// FiringAlert is one entry of GET /debug/alerts.
type FiringAlert struct {
	// Node serves the key.
	Node string `json:"node"`
	// Alert is the alert document (docs/rules.md) of the alert's
	// transition to firing: an Alert.
	Alert json.RawMessage `json:"alert"`
}

// Alert is the alert document (docs/rules.md) of a rule's transition on a
// key, as published on NATS (<prefix>.<key>), written to Kafka and listed by
// GET /debug/alerts.
type Alert struct {
	// ID is "<rule>/<key>/<at>/<state>": the same transition, published
	// again, has the same id.
	ID    string `json:"id"`
	Rule  string `json:"rule"`
	Key   string `json:"key"`
	State string `json:"state"` // "firing" or "resolved"
	// Value is the rule's aggregate at the transition; null when there
	// was none (an absent rule, an empty window).
	Value     *float64          `json:"value"`
	Threshold float64           `json:"threshold"`
	Severity  string            `json:"severity"`
	Labels    map[string]string `json:"labels,omitempty"`
	// StartedAt is when the alert started, in epoch milliseconds: for a
	// threshold rule the event time its condition began to hold; for an
	// absent rule the wall time the key was last seen.
	StartedAt int64 `json:"started_at"`
	// At is when the transition happened, in epoch milliseconds: the event
	// time of the evaluation for a threshold rule; for an absent rule's
	// firing, the last seen time plus the rule's absent duration.
	At int64 `json:"at"`
}

// Alerts is the GET /debug/alerts document.
type Alerts struct {
	// Alerts are the firing alerts, by key then rule.
	Alerts []FiringAlert `json:"alerts"`
	// Errors names the nodes that did not answer (scope=cluster), by id.
	Errors map[string]string `json:"errors,omitempty"`
}

// KeySummary is one row of GET /debug/actors.
type KeySummary struct {
	Key           string    `json:"key"`
	Node          string    `json:"node"`
	Partition     int32     `json:"partition"`
	EventsApplied uint64    `json:"events_applied"`
	LastEventAt   time.Time `json:"last_event_at"`
}

// KeyList is the document of GET /debug/actors: the live keys that start
// with prefix, sorted, at most limit (default 100, at most 10,000), after
// the key after when it is given (a page starts after the previous page's
// Next), of the node or, with scope=cluster, of every node.
type KeyList struct {
	// Live is the number of live key actors on the node (or cluster).
	Live int64        `json:"live"`
	Keys []KeySummary `json:"keys"`
	// Truncated is true when more keys matched than the limit.
	Truncated bool `json:"truncated"`
	// Next, when Truncated, is the last key listed: the after parameter
	// of the next page.
	Next string `json:"next,omitempty"`
}

// Cut sorts l's keys and keeps the first limit of them, setting Truncated
// and Next when it drops any or when Truncated was set already.
func (l *KeyList) Cut(limit int) {
	sort.Slice(l.Keys, func(i, j int) bool { return l.Keys[i].Key < l.Keys[j].Key })
	if len(l.Keys) > limit {
		l.Keys, l.Truncated = l.Keys[:limit], true
	}
	l.Next = ""
	if l.Truncated && len(l.Keys) > 0 {
		l.Next = l.Keys[len(l.Keys)-1].Key
	}
}

// Members is the document of GET /debug/cluster/members: for each member
// of the cluster, whether it is ready and which of its partitions are in
// motion, as the node answering finds them: its own, and each peer's from
// the peer's GET /debug/cluster over HTTP on its http_addr (at most 2 s
// each, all at once). Standalone, the node is the only member.
type Members struct {
	Self    string                  `json:"self"`
	Members map[string]MemberStatus `json:"members"`
}

// MemberStatus is one member's readiness and partitions in motion.
type MemberStatus struct {
	// Ready and Reason are the member's ready and not_ready_reason (its
	// /readyz); Reason also says why it could not be asked.
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
	// Moving lists the partitions the member holds that are not serving:
	// acquiring (a handoff in), replaying, releasing (a handoff out) or
	// suspended.
	Moving []PartitionState `json:"moving"`
	// Replaying lists the member's log sources (Kafka or JetStream)
	// replaying.
	Replaying []SourceStatus `json:"replaying"`
}

// StatusOf returns the member status the cluster document of a member
// (its GET /debug/cluster) gives.
func StatusOf(doc *Cluster) MemberStatus {
	st := MemberStatus{Ready: doc.Ready, Reason: doc.NotReadyReason, Moving: []PartitionState{}, Replaying: []SourceStatus{}}
	for _, p := range doc.Partitions {
		if p.State != "serving" {
			st.Moving = append(st.Moving, p)
		}
	}
	for _, s := range doc.Sources {
		if s.State == "replaying" {
			st.Replaying = append(st.Replaying, s)
		}
	}
	return st
}

// Member is one node of the cluster.
type Member struct {
	ID         string  `json:"id"`
	RemoteAddr string  `json:"remote_addr"`
	HTTPAddr   string  `json:"http_addr"`
	Version    string  `json:"version"`
	Partitions []int32 `json:"partitions"`
}

// PeerStats counts traffic with one peer node.
type PeerStats struct {
	BytesSent      uint64 `json:"bytes_sent"`
	BytesReceived  uint64 `json:"bytes_received"`
	EventsSent     uint64 `json:"events_sent"`
	EventsReceived uint64 `json:"events_received"`
}

// Cluster is the document of GET /debug/cluster.
type Cluster struct {
	Cluster    string `json:"cluster"`
	Self       string `json:"self"`
	Leader     string `json:"leader"`
	Epoch      int64  `json:"epoch"`
	Generation int64  `json:"generation"`
	// PartitionCount is the number of key partitions.
	PartitionCount int `json:"partition_count"`
	// Serving lists the partitions this node serves right now.
	Serving []int32 `json:"serving"`
	// Connected is false while the node has no ZooKeeper session.
	Connected  bool                 `json:"connected"`
	Members    []Member             `json:"members"`
	Assignment map[string]string    `json:"assignment"`
	Peers      map[string]PeerStats `json:"peers"`
	// Sources lists this node's Kafka source actors (with Kafka only):
	// state ("starting", "replaying", "live"), offsets and lag.
	Sources []SourceStatus `json:"sources,omitempty"`
	// Partitions lists the partitions this node holds in any
	// lifecycle state (acquiring, replaying, serving, releasing), with the
	// token of the grant it holds them under.
	Partitions []PartitionState `json:"partitions"`
	// Ready is what /readyz answers: the node is a member and serves every
	// partition the newest assignment gives it; NotReadyReason says why not.
	Ready          bool   `json:"ready"`
	NotReadyReason string `json:"not_ready_reason"`
}

// PartitionState is a partition's lifecycle state on a node.
type PartitionState struct {
	Partition int32 `json:"partition"`
	// State is "acquiring", "replaying", "serving" or "releasing", or
	// "suspended": replaying or serving, but the node's ZooKeeper lease
	// has lapsed (it answers no read for the partition until it is renewed
	// or the partition dropped).
	State string `json:"state"`
	// Token is the grant's "epoch/generation".
	Token string `json:"token"`
}

// SourceStatus is one Kafka partition consumed by this node. Offsets are
// Kafka "next" offsets (one past the last record), -1 when unknown.
type SourceStatus struct {
	Partition int32 `json:"partition"`
	// State is "starting", "replaying" or "live".
	State string `json:"state"`
	// Applied is one past the last record applied (or dead-lettered).
	Applied int64 `json:"applied"`
	// Committed is the offset last committed to the group.
	Committed int64 `json:"committed"`
	// ReplayFrom and ReplayTo bound the restore-mode replay; equal when
	// there is none.
	ReplayFrom int64 `json:"replay_from"`
	ReplayTo   int64 `json:"replay_to"`
	// HighWatermark is the partition's end offset as of the last fetch.
	HighWatermark int64 `json:"high_watermark"`
	// Lag is HighWatermark − Applied (0 when either is unknown).
	Lag int64 `json:"lag"`
	// Buffered is the number of records fetched and not yet applied.
	Buffered int `json:"buffered"`
}

// Error is the body of every non-2xx answer but ingest's.
type Error struct {
	Error string `json:"error"`
}
