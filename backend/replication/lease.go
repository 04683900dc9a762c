package replication

import "time"

// LeaseEnd is when a lease ends that a primary obtained with a message it
// sent at sent and its backup answered: a fraction of the heartbeat
// timeout later.
func LeaseEnd(sent time.Time, timeout time.Duration) time.Time {
	return sent.Add(time.Duration(float64(timeout) * leaseFraction))
}

// MayTakeOver reports whether a backup that last heard from the primary at
// lastHeard may take its sessions over at now (without a refused
// connection proving the process gone).
func MayTakeOver(lastHeard, now time.Time, timeout time.Duration) bool {
	return now.Sub(lastHeard) >= timeout
}
