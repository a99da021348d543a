package cluster

import (
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// zkLogEvery is the least time between two lines of the ZooKeeper client
// with the same format: a client that cannot reach its servers says so
// about once a second.
const zkLogEvery = 5 * time.Second

// zkLogger passes the ZooKeeper client's log lines to the node's logger
// at Warn (the client, with its info lines off, logs only trouble: failed
// connections, lost sessions), at most one line per zkLogEvery for each
// format, saying how many it dropped since. Safe for concurrent use.
type zkLogger struct {
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex
	lines map[string]*zkLogLine // by format: the client's formats are few
}

type zkLogLine struct {
	last    time.Time
	dropped int
}

func newZKLogger(log *slog.Logger, now func() time.Time) *zkLogger {
	return &zkLogger{log: log, now: now, lines: map[string]*zkLogLine{}}
}

// Printf implements zk.Logger.
func (l *zkLogger) Printf(format string, args ...any) {
	now := l.now()
	l.mu.Lock()
	line := l.lines[format]
	if line == nil {
		line = &zkLogLine{}
		l.lines[format] = line
	} else if now.Sub(line.last) < zkLogEvery {
		line.dropped++
		l.mu.Unlock()
		return
	}
	dropped := line.dropped
	line.last, line.dropped = now, 0
	l.mu.Unlock()
	msg := "zookeeper client: " + fmt.Sprintf(format, args...)
	if dropped > 0 {
		l.log.Warn(msg, "similar_dropped", dropped)
		return
	}
	l.log.Warn(msg)
}
