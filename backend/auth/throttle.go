package auth

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Console login throttling, like WebLogic's user lockout: after
// MaxLoginFailures wrong passwords in a row for one user name, or from one
// client address, further attempts are refused without checking the
// password for a delay that doubles with every further failure (from
// LoginLockBase up to LoginLockMax). A success clears the user's and the
// address's count. The lockout is recorded (audit entry and an
// auth.locked event) when it starts.
const (
	MaxLoginFailures = 5
	LoginLockBase    = time.Second
	LoginLockMax     = 5 * time.Minute
	// loginForgetAfter: a count untouched this long starts again at 0.
	loginForgetAfter = 15 * time.Minute
	// maxThrottled bounds the entries kept (one per name and per address).
	maxThrottled = 100000
)

// ErrThrottled is returned by Login while its user or address is locked;
// the API answers 429 with Retry-After.
var ErrThrottled = errors.New("auth: too many failed logins")

// ThrottledError carries how long to wait.
type ThrottledError struct{ Wait time.Duration }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed logins; try again in %s", e.Wait.Round(time.Second))
}
func (e *ThrottledError) Unwrap() error { return ErrThrottled }

type attempts struct {
	fails int
	until time.Time // locked until
	last  time.Time
}

type throttle struct {
	mu sync.Mutex
	m  map[string]*attempts
}

// wait returns how long key is still locked (0: not locked).
func (t *throttle) wait(key string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a := t.m[key]; a != nil && now.Before(a.until) {
		return a.until.Sub(now)
	}
	return 0
}

// fail counts a failure of key and reports the lock it starts (0: none).
func (t *throttle) fail(key string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]*attempts{}
	}
	a := t.m[key]
	if a == nil || now.Sub(a.last) > loginForgetAfter {
		if len(t.m) >= maxThrottled {
			t.pruneLocked(now)
		}
		a = &attempts{}
		t.m[key] = a
	}
	a.fails++
	a.last = now
	if a.fails < MaxLoginFailures {
		return 0
	}
	d := LoginLockBase << min(a.fails-MaxLoginFailures, 20)
	d = min(d, LoginLockMax)
	a.until = now.Add(d)
	return d
}

// ok clears key's count.
func (t *throttle) ok(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, key)
}

// pruneLocked drops entries not locked and untouched for a while, or,
// if that frees nothing, every unlocked one. Caller holds t.mu.
func (t *throttle) pruneLocked(now time.Time) {
	for k, a := range t.m {
		if now.After(a.until) && now.Sub(a.last) > time.Minute {
			delete(t.m, k)
		}
	}
	if len(t.m) >= maxThrottled {
		for k, a := range t.m {
			if now.After(a.until) {
				delete(t.m, k)
			}
		}
	}
}
