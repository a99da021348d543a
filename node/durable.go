package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/squallhq/squall/jslog"
	"github.com/squallhq/squall/source"
)

// dataFormat is the layout version of a data directory: the identity
// file, the stream and its subjects, the encoding of batches and of
// progress. A node refuses a directory of another format.
const dataFormat = 1

// identityFile names the file saying whose a data directory is.
const identityFile = "squall.json"

// identity is the content of identityFile.
type identity struct {
	Format     int    `json:"format"`
	Cluster    string `json:"cluster"`
	Partitions int    `json:"partitions"`
}

// dataDir is an open data directory, locked against a second process.
type dataDir struct {
	path string
	lock *os.File
}

// openDataDir creates or opens dir for cluster and partitions: a new or
// empty directory gets an identity file; one with an identity file must
// match it (cluster name, format, partition count: keys would map to
// other partitions); one with other files and none is refused. The
// directory is locked (flock) until close.
func openDataDir(dir, cluster string, partitions int) (_ *dataDir, err error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil, fmt.Errorf("--data-dir %s is in use by another process (%w)", dir, err)
	}
	want := identity{Format: dataFormat, Cluster: cluster, Partitions: partitions}
	b, err := os.ReadFile(filepath.Join(dir, identityFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("--data-dir %s: %w", dir, err)
		}
		for _, e := range entries {
			if e.Name() != "LOCK" {
				return nil, fmt.Errorf("--data-dir %s holds files but no %s: not a Squall data directory", dir, identityFile)
			}
		}
		if err := writeIdentity(dir, want); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("--data-dir %s: %w", dir, err)
	default:
		var got identity
		if err := json.Unmarshal(b, &got); err != nil {
			return nil, fmt.Errorf("--data-dir %s: %s unreadable: %w", dir, identityFile, err)
		}
		switch {
		case got.Format != dataFormat:
			return nil, fmt.Errorf("--data-dir %s has data format %d; this version of Squall reads format %d", dir, got.Format, dataFormat)
		case got.Cluster != cluster:
			return nil, fmt.Errorf("--data-dir %s belongs to cluster %q, not %q (--cluster)", dir, got.Cluster, cluster)
		case got.Partitions != partitions:
			return nil, fmt.Errorf("--data-dir %s was written with %d partitions, not %d (--partitions): keys would move", dir, got.Partitions, partitions)
		}
	}
	return &dataDir{path: dir, lock: lock}, nil
}

func writeIdentity(dir string, id identity) error {
	b, _ := json.MarshalIndent(id, "", "  ") // plain struct: cannot fail
	tmp := filepath.Join(dir, identityFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o640); err != nil {
		return fmt.Errorf("--data-dir %s: %w", dir, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, identityFile)); err != nil {
		return fmt.Errorf("--data-dir %s: %w", dir, err)
	}
	return nil
}

func (d *dataDir) close() {
	if d != nil {
		d.lock.Close() // releases the flock
	}
}

// jetStreamOptions turns JetStream on in the embedded server's options,
// with its file store in the data directory.
func (d *dataDir) jetStreamOptions(o *server.Options) {
	o.JetStream = true
	o.StoreDir = filepath.Join(d.path, "jetstream")
}

// startJetStream makes a JetStream stream the node's log: HTTP and NATS
// input is stored in the stream before it is answered, and each
// partition's source actor consumes it from its restore point. A
// standalone node's stream is on its embedded server (--data-dir), with
// its progress in a KV bucket there; a cluster's (--jetstream-replicas) is
// on --nats-url with that many replicas, its progress committed to
// ZooKeeper, fenced by each partition's lifecycle, which starts and stops
// the sources, as with Kafka.
func (n *Node) startJetStream() error {
	where := "--data-dir " + n.cfg.DataDir
	if n.cfg.JetStreamReplicas > 0 {
		where = fmt.Sprintf("--jetstream-replicas %d on --nats-url %s", n.cfg.JetStreamReplicas, n.cfg.NATSURL)
	}
	k, err := n.newLogSide()
	if err != nil {
		return err
	}
	// A connection of its own: the log's acknowledgements do not queue
	// behind ingest and alert traffic, and it is closed after the sources.
	nc, err := nats.Connect(n.natsURL, n.natsOptions("log")...)
	if err != nil {
		return fmt.Errorf("%s: connecting to JetStream: %w", where, err)
	}
	// Standalone, one log partition for all key partitions: the node owns
	// them all, so one message per accepted batch and one consumer do
	// (per key partition, a batch over many keys would be as many small
	// messages). A cluster's owners consume the key partitions they own.
	k.single = n.cfg.ZK == ""
	parts := n.cfg.Partitions
	if k.single {
		parts = 1
	}
	jc := jslog.Config{
		Conn:       nc,
		Partitions: parts,
		Replicas:   n.cfg.JetStreamReplicas, // 0 (standalone): jslog's default, 1
		Retention:  n.cfg.Retention,
		MaxAge:     n.cfg.LogMaxAge,
		MaxBytes:   n.cfg.LogMaxBytes,
		Logger:     n.log,
		Registerer: n.reg,
	}
	if jc.MaxBytes == 0 {
		jc.MaxBytes = -1
	}
	if n.alerts != nil {
		jc.CommitHold = n.alerts.out.Hold // undelivered alerts are replayed
	}
	if n.cfg.ZK != "" {
		// In a cluster, progress is committed to ZooKeeper, fenced by the
		// partition's lifecycle; sources are started by it too.
		jc.Store, jc.OnLive = k, k.onLive
	}
	src, err := jslog.New(jc, k)
	if err != nil {
		nc.Close()
		return fmt.Errorf("%s: %w", where, err)
	}
	pc := jc
	pc.Registerer = nil
	prod, err := jslog.NewProducer(pc)
	if err != nil {
		src.Close()
		nc.Close()
		return fmt.Errorf("%s: %w", where, err)
	}
	k.src, k.prod, k.closeLog = src, prod, nc.Close
	n.logs = k
	return nil
}

// logReady is the readiness of a standalone node with a log: every
// partition's source has replayed its restore range, is live, and has
// caught up with the log as its source last saw it. Once ready, the node
// stays ready: under load the log's end moves on, and being a little
// behind it is not being unready.
func (n *Node) logReady() (bool, string) {
	if n.logs.caughtUp.Load() {
		return true, ""
	}
	live, behind := 0, 0
	for _, s := range n.logs.src.Status() {
		if s.State != source.StateLive {
			continue
		}
		live++
		if s.HighWatermark > 0 && s.Applied < s.HighWatermark {
			behind++
		}
	}
	switch parts := n.logs.logPartitions(); {
	case live < parts:
		return false, fmt.Sprintf("replaying the log: %d of %d partitions live", live, parts)
	case behind > 0:
		return false, fmt.Sprintf("catching up with the log: %d of %d partitions behind", behind, parts)
	}
	n.logs.caughtUp.Store(true)
	return true, ""
}
