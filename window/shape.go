package window

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors of the window package. Errors returned by Shape.Validate
// and Window.UnmarshalBinary wrap one of them; test with errors.Is.
var (
	// ErrInvalidShape is wrapped by every error of Shape.Validate.
	ErrInvalidShape = errors.New("window: invalid shape")
	// ErrCorrupt is wrapped by UnmarshalBinary when the input is not a
	// well-formed encoded window (truncated, unknown version, values out of
	// range).
	ErrCorrupt = errors.New("window: corrupt encoded window")
	// ErrShapeMismatch is returned by UnmarshalBinary when the encoded
	// window was built with a different Resolution than the receiver's.
	ErrShapeMismatch = errors.New("window: encoded window has a different resolution")
)

// Limits enforced by Shape.Validate.
const (
	// MaxBuckets is the largest Retention/Resolution accepted.
	MaxBuckets = 1 << 30
	// MaxRecent is the largest Shape.Recent accepted.
	MaxRecent = 1 << 16
)

// Shape is the window shape shared by all keys of a node: every Window
// built by New keeps a pointer to it, so a Shape is never copied per key.
//
// A Shape must pass Validate before it is given to New and must not be
// modified afterwards; reading it from many goroutines is then safe.
// The zero Shape is not valid; start from DefaultShape.
type Shape struct {
	// Retention is the length of event time a window holds. It must be a
	// multiple of Resolution and at most MaxBuckets resolutions.
	// Default 10m.
	Retention time.Duration
	// Resolution is the bucket width: an event with time ts (epoch ms)
	// falls in bucket floor(ts / Resolution). At least 1ms, in whole
	// milliseconds. Default 1s.
	Resolution time.Duration
	// Subwindows are the sub-window lengths reported beside the whole
	// window (for example by the key-state document). Each must be a
	// multiple of Resolution and at most Retention; sorted ascending, no
	// duplicates; may be empty. Window.AggregateOver accepts any length,
	// not only these. Default 1m, 5m.
	Subwindows []time.Duration
	// Recent is how many of the most recently applied events a window
	// keeps for inspection and replay; 0 disables it. At most MaxRecent.
	// Default 32.
	Recent int
}

// DefaultShape returns the default shape: Retention 10m, Resolution 1s,
// Subwindows 1m and 5m, Recent 32.
func DefaultShape() Shape {
	return Shape{
		Retention:  10 * time.Minute,
		Resolution: time.Second,
		Subwindows: []time.Duration{time.Minute, 5 * time.Minute},
		Recent:     32,
	}
}

// Validate reports whether s is usable by New. The error wraps
// ErrInvalidShape and names the offending field. Validate does not modify s.
func (s *Shape) Validate() error {
	if s == nil {
		return fmt.Errorf("%w: nil shape", ErrInvalidShape)
	}
	if s.Resolution < time.Millisecond {
		return fmt.Errorf("%w: Resolution %v must be at least 1ms", ErrInvalidShape, s.Resolution)
	}
	if s.Resolution%time.Millisecond != 0 {
		return fmt.Errorf("%w: Resolution %v is not a whole number of milliseconds", ErrInvalidShape, s.Resolution)
	}
	if s.Retention < s.Resolution {
		return fmt.Errorf("%w: Retention %v must be at least Resolution %v", ErrInvalidShape, s.Retention, s.Resolution)
	}
	if s.Retention%s.Resolution != 0 {
		return fmt.Errorf("%w: Retention %v is not a multiple of Resolution %v", ErrInvalidShape, s.Retention, s.Resolution)
	}
	if s.Retention/s.Resolution > MaxBuckets {
		return fmt.Errorf("%w: Retention %v is more than %d resolutions of %v", ErrInvalidShape, s.Retention, MaxBuckets, s.Resolution)
	}
	for i, d := range s.Subwindows {
		switch {
		case d <= 0:
			return fmt.Errorf("%w: Subwindows[%d] %v must be positive", ErrInvalidShape, i, d)
		case d%s.Resolution != 0:
			return fmt.Errorf("%w: Subwindows[%d] %v is not a multiple of Resolution %v", ErrInvalidShape, i, d, s.Resolution)
		case d > s.Retention:
			return fmt.Errorf("%w: Subwindows[%d] %v is longer than Retention %v", ErrInvalidShape, i, d, s.Retention)
		case i > 0 && d <= s.Subwindows[i-1]:
			return fmt.Errorf("%w: Subwindows must be sorted ascending without duplicates (Subwindows[%d] %v after %v)", ErrInvalidShape, i, d, s.Subwindows[i-1])
		}
	}
	if s.Recent < 0 || s.Recent > MaxRecent {
		return fmt.Errorf("%w: Recent %d must be between 0 and %d", ErrInvalidShape, s.Recent, MaxRecent)
	}
	return nil
}

// resMs is the resolution in milliseconds.
func (s *Shape) resMs() int64 { return int64(s.Resolution / time.Millisecond) }

// span is Retention/Resolution, the number of buckets a window can hold.
func (s *Shape) span() int64 { return int64(s.Retention / s.Resolution) }
