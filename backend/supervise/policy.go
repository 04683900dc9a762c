// Package supervise starts, stops and restarts child processes: each in its
// own process group, its output in a size-rotated log file, its pid in a pid
// file so a later supervisor re-adopts it instead of starting a duplicate,
// and a crash restarted after a backoff, at most Policy.MaxRestarts times
// within Policy.Interval (WebLogic's RestartMax / RestartIntervalSeconds).
//
// The restart decision (Tracker) is pure: no processes, no clocks of its own.
package supervise

import (
	"errors"
	"fmt"
	"time"
)

// Policy says whether and when a process that exited on its own is started
// again.
type Policy struct {
	// MaxRestarts is how many automatic restarts are allowed within
	// Interval; 0 disables automatic restarts.
	MaxRestarts int
	// Interval is the sliding window MaxRestarts counts in.
	Interval time.Duration
	// Delay is the wait before the first restart in the window; each
	// further restart in the window doubles it, up to MaxDelay.
	Delay time.Duration
	// MaxDelay caps the backoff.
	MaxDelay time.Duration
}

// DefaultPolicy restarts a crashed process at most 3 times in 5 minutes,
// after 1 s, 2 s, 4 s.
func DefaultPolicy() Policy {
	return Policy{MaxRestarts: 3, Interval: 5 * time.Minute, Delay: time.Second, MaxDelay: 30 * time.Second}
}

// ErrBadPolicy is returned by Policy.Validate.
var ErrBadPolicy = errors.New("supervise: bad restart policy")

// Validate checks the policy's fields.
func (p Policy) Validate() error {
	switch {
	case p.MaxRestarts < 0:
		return fmt.Errorf("%w: max restarts %d is negative", ErrBadPolicy, p.MaxRestarts)
	case p.MaxRestarts > 0 && p.Interval <= 0:
		return fmt.Errorf("%w: interval must be positive", ErrBadPolicy)
	case p.Delay < 0 || p.MaxDelay < 0:
		return fmt.Errorf("%w: negative delay", ErrBadPolicy)
	case p.MaxDelay > 0 && p.MaxDelay < p.Delay:
		return fmt.Errorf("%w: max delay below delay", ErrBadPolicy)
	}
	return nil
}

// Decision is the Tracker's answer to an exit.
type Decision struct {
	Restart bool          // start the process again
	Delay   time.Duration // after this long
	Reason  string        // for logs and the process state message
}

// Tracker applies a Policy to the exits of one process. It is not safe for
// concurrent use; the zero value is not usable (use NewTracker).
type Tracker struct {
	policy   Policy
	restarts []time.Time // automatic restarts decided within the window
	total    int
}

// NewTracker returns a tracker with no restarts yet.
func NewTracker(p Policy) *Tracker { return &Tracker{policy: p} }

// Exited decides what to do about an exit at now. requested is true when the
// supervisor itself stopped the process: never restarted.
func (t *Tracker) Exited(now time.Time, requested bool) Decision {
	if requested {
		return Decision{Reason: "stopped on request"}
	}
	if t.policy.MaxRestarts == 0 {
		return Decision{Reason: "automatic restart disabled"}
	}
	cut := now.Add(-t.policy.Interval)
	kept := t.restarts[:0]
	for _, r := range t.restarts {
		if r.After(cut) {
			kept = append(kept, r)
		}
	}
	t.restarts = kept
	n := len(t.restarts)
	if n >= t.policy.MaxRestarts {
		return Decision{Reason: fmt.Sprintf("gave up: %d restarts within %s", n, t.policy.Interval)}
	}
	d := t.policy.Delay
	for i := 0; i < n && d > 0; i++ {
		d *= 2
		if t.policy.MaxDelay > 0 && d >= t.policy.MaxDelay {
			d = t.policy.MaxDelay
			break
		}
	}
	if t.policy.MaxDelay > 0 && d > t.policy.MaxDelay {
		d = t.policy.MaxDelay
	}
	t.restarts = append(t.restarts, now)
	t.total++
	return Decision{Restart: true, Delay: d, Reason: fmt.Sprintf("restart %d of %d within %s after %s", n+1, t.policy.MaxRestarts, t.policy.Interval, d)}
}

// Reset forgets past restarts (a start or restart by command does this).
func (t *Tracker) Reset() { t.restarts = t.restarts[:0] }

// Total is how many automatic restarts were decided since the tracker was made.
func (t *Tracker) Total() int { return t.total }
