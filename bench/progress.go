package bench

import (
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

const (
	// progressPlainEvery is how often the progress goes out as a plain
	// line when the writer is not a terminal.
	progressPlainEvery = 5 * time.Second
	// progressEvery is the default redraw period on a terminal.
	progressEvery = 500 * time.Millisecond
	// progressWidth caps the line so that it does not wrap (a wrapped line
	// cannot be rewritten with "\r") on an 80-column terminal.
	progressWidth = 79
)

// Progress is a status line about a running scenario, rewritten in place
// on a terminal. StartProgress starts it; Stop ends it. Its methods are
// safe for concurrent use.
type Progress struct {
	w      io.Writer
	prefix string // "  name: "
	status func() string
	tty    bool
	every  time.Duration

	stopOnce sync.Once
	stop     chan struct{} // closed by Stop
	done     chan struct{} // closed when the goroutine has returned

	// Owned by the goroutine until done is closed, then by Stop.
	width int  // runes of the line on screen
	dead  bool // a write failed: the line is not drawn any more
}

// StartProgress starts a goroutine that shows "  name: " + status() on w
// until Stop. When w is a terminal (an *os.File that is a character
// device) the line is rewritten in place ("\r", padded with spaces to
// clear the previous text, cut at 79 columns) now and every `every`
// (default 500ms when ≤ 0); otherwise it is written as a plain line every
// 5 seconds. status is called from that goroutine and must be safe to
// call concurrently with the code that changes what it reports. Write
// errors are ignored: the progress line is best effort, and stops at the
// first one.
func StartProgress(w io.Writer, name string, status func() string, every time.Duration) *Progress {
	tty := isTerminal(w)
	if !tty {
		every = progressPlainEvery
	}
	return startProgress(w, name, status, every, tty)
}

// startProgress is StartProgress with the terminal test and the period
// given (for tests).
func startProgress(w io.Writer, name string, status func() string, every time.Duration, tty bool) *Progress {
	if every <= 0 {
		every = progressEvery
	}
	if status == nil {
		status = func() string { return "" }
	}
	p := &Progress{w: w, prefix: "  " + name + ": ", status: status, tty: tty, every: every,
		stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

// isTerminal reports whether w is a file that is a character device.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *Progress) loop() {
	defer close(p.done)
	t := time.NewTicker(p.every)
	defer t.Stop()
	if p.tty {
		p.draw()
	}
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.draw()
		}
	}
}

// draw writes the line once.
func (p *Progress) draw() {
	if p.dead {
		return
	}
	line := p.prefix + strings.Join(strings.Fields(p.status()), " ")
	if !p.tty {
		p.write(line + "\n")
		return
	}
	if n := utf8.RuneCountInString(line); n > progressWidth {
		line = string([]rune(line)[:progressWidth-1]) + "…"
	}
	n := utf8.RuneCountInString(line)
	pad := max(p.width-n, 0)
	p.write("\r" + line + strings.Repeat(" ", pad))
	p.width = n
}

func (p *Progress) write(s string) {
	if _, err := io.WriteString(p.w, s); err != nil {
		p.dead = true
	}
}

// Stop stops the line and, on a terminal, clears it ("\r", spaces, "\r")
// so that what is printed next starts on a clean line. It returns once
// the goroutine has exited. Calling it again does nothing.
func (p *Progress) Stop() {
	p.stopOnce.Do(func() {
		close(p.stop)
		<-p.done
		if p.tty && p.width > 0 && !p.dead {
			p.write("\r" + strings.Repeat(" ", p.width) + "\r")
		}
	})
}
