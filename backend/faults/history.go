// Package faults is Tandem's fault-injection harness: clients drive
// sessions through real processes while nemeses kill, pause and cut them,
// and a history checker in the Jepsen spirit decides afterwards whether any
// acknowledged session write was lost, went backwards or was served stale.
//
// The checker is pure (this file); the harness that starts the real
// binaries lives in the package's tests, and bench/faults runs it longer.
package faults

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// Op is one request a client sent for one logical session, and what it saw.
// A client sends one request per session at a time, so a session's ops are
// totally ordered by Seq.
type Op struct {
	Key     int       // logical session (the client's slot)
	Seq     int       // order of this op within Key, from 0
	Start   time.Time // when the request was sent
	End     time.Time // when the answer (or the error) came back
	OK      bool      // acknowledged: 200 with a parsable counter
	Session string    // session id seen (OK only)
	Count   int64     // counter seen (OK only)
	Server  string    // server that answered (OK only)
	Via     string    // how the request was routed (webserver, direct, ...)
	Err     string    // why not OK; the write may or may not have happened
}

// History records ops from many goroutines.
type History struct {
	mu  sync.Mutex
	ops []Op
	seq map[int]int
}

// NewHistory returns an empty history.
func NewHistory() *History { return &History{seq: map[int]int{}} }

// Add records op, assigning its Seq within its Key, and returns it.
func (h *History) Add(op Op) Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.Seq = h.seq[op.Key]
	h.seq[op.Key]++
	h.ops = append(h.ops, op)
	return op
}

// Ops returns a copy of every op recorded so far.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// Anomaly kinds.
const (
	// Lost: an acknowledged session came back as another session id.
	Lost = "lost-session"
	// Backwards: a counter lower than or equal to one already acknowledged
	// (a lost write or a stale copy served).
	Backwards = "backwards"
	// Duplicate: a counter higher than every write the client could have
	// caused (a request applied twice, e.g. re-sent by a proxy after the
	// first server applied it, or a phantom write).
	Duplicate = "duplicate-apply"
	// NewSession: the first answer of a session did not start at 1.
	NewSession = "bad-first-count"
)

// Anomaly is one violation found in a history.
type Anomaly struct {
	Kind string
	Key  int
	Seq  int
	Msg  string
}

func (a Anomaly) String() string {
	return fmt.Sprintf("%s: session %d op %d: %s", a.Kind, a.Key, a.Seq, a.Msg)
}

// Result sums up a checked history.
type Result struct {
	Ops           int // every request sent
	Acknowledged  int
	Indeterminate int // failed requests: the write may or may not have happened
	Sessions      int
	Anomalies     []Anomaly
}

// Check verifies a history of /counter requests. For each logical session,
// in order: the first acknowledged answer names the session id it keeps
// for ever and counts 1 (the cookie of a failed first request is never
// seen, so the next one starts a new session); each later acknowledged answer is exactly the last acknowledged count
// + 1, or up to + 1 + k when k requests in between failed (each of those may
// have been applied before the failure). Anything lower is a lost write or
// a stale copy; anything higher is a phantom write.
func Check(ops []Op) Result {
	byKey := map[int][]Op{}
	for _, op := range ops {
		byKey[op.Key] = append(byKey[op.Key], op)
	}
	keys := make([]int, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	res := Result{Ops: len(ops), Sessions: len(keys)}
	for _, k := range keys {
		kops := byKey[k]
		sort.Slice(kops, func(i, j int) bool { return kops[i].Seq < kops[j].Seq })
		var (
			id      string
			last    int64 // last acknowledged count (0: none yet)
			pending int64 // failed requests since the last acknowledgement
		)
		for _, op := range kops {
			if !op.OK {
				res.Indeterminate++
				pending++
				continue
			}
			res.Acknowledged++
			bad := func(kind, format string, args ...any) {
				res.Anomalies = append(res.Anomalies, Anomaly{Kind: kind, Key: k, Seq: op.Seq,
					Msg: fmt.Sprintf(format, args...) + fmt.Sprintf(" (session %.8s…, answered by %s via %s at %s)", op.Session, op.Server, op.Via, op.End.Format("15:04:05.000"))})
			}
			switch {
			case id == "" && op.Count != 1:
				// A failed first request may have created a session whose
				// cookie the client never saw; the next one starts anew at 1.
				bad(NewSession, "first count %d", op.Count)
			case id != "" && op.Session != id:
				bad(Lost, "session %.8s… became %.8s… with count %d; last acknowledged count %d", id, op.Session, op.Count, last)
			case id != "" && op.Count <= last:
				bad(Backwards, "count %d after %d was acknowledged", op.Count, last)
			case id != "" && op.Count < last+1:
				bad(Backwards, "count %d, want %d", op.Count, last+1)
			case id != "" && op.Count > last+1+pending:
				bad(Duplicate, "count %d after %d with %d failed requests in between", op.Count, last, pending)
			}
			// Carry on from what was seen, so one anomaly is reported once.
			id, last, pending = op.Session, op.Count, 0
		}
	}
	return res
}
