package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"tandem/backend/domain"
	"tandem/backend/session"
)

var _ session.Store = (*Node)(nil)

// Get implements session.Store: it serves sessions this server owns (with
// a valid lease), takes over or forwards sessions it holds a copy of, and
// asks its peers about the rest.
func (n *Node) Get(ctx context.Context, l session.Lookup) (session.Txn, error) {
	n.pauseCheck()
	for attempt := 0; attempt < 6; attempt++ {
		e := n.lookup(l.ID)
		if e == nil {
			if err := n.locate(ctx, l); !errors.Is(err, errLookAgain) {
				return nil, err
			}
			continue
		}
		e.mu.Lock()
		r := e.rec
		if r == nil {
			e.mu.Unlock()
			continue
		}
		if r.Owner == n.name {
			n.mu.Lock()
			to := n.sessionTimeout()
			n.mu.Unlock()
			if session.Expired(r.Access, to, n.now()) {
				if e.copiedTo != "" {
					n.senderFor(e.copiedTo).enqueueNoWait(Item{Op: opDrop, Rec: &session.Record{ID: r.ID, Owner: n.name, Epoch: r.Epoch}})
				}
				e.rec = nil
				n.remove(r.ID, e)
				e.mu.Unlock()
				return nil, session.ErrNotFound
			}
			if need := n.unleased(e); need != "" {
				e.mu.Unlock()
				if err := n.ensureLease(ctx, need); err != nil {
					return nil, err
				}
				continue
			}
			return &txn{n: n, e: e, work: r.Clone()}, nil
		}
		owner := r.Owner
		e.mu.Unlock()
		if err := n.claim(ctx, l, owner, e); err != nil {
			return nil, err
		}
	}
	return nil, session.ErrUnavailable
}

// unleased returns a server that may hold a copy of e's record (its
// backup, the last server that acknowledged a copy, or an old one not yet
// confirmed to have dropped it) and could therefore have taken it over,
// and from which we hold no lease; "" when there is none. Without every
// lease we may neither serve the record nor hand it to anyone (a copy to
// a new backup, a failback): after a pause it may be stale, and its
// takeover is learnt from the lease's heartbeat. e.mu is held and e.rec
// is set.
func (n *Node) unleased(e *entry) string {
	for _, s := range [...]string{e.rec.Backup, e.holder, e.dropAt} {
		if s != "" && !n.leaseOK(s) {
			return s
		}
	}
	return ""
}

// claim handles a request for a session we hold a copy of: forward it to
// its live owner (verify, or an owner that keeps it), take it over from a
// dead owner, or have the owner relinquish it (immediate). A nil error
// means: look again.
func (n *Node) claim(ctx context.Context, l session.Lookup, owner string, e *entry) error {
	n.mu.Lock()
	p := n.peers[owner]
	mode := n.sc.Cluster.FailoverMode
	shared := n.sc.Session.Shared
	n.mu.Unlock()
	if p == nil || !shared {
		// The owner left the cluster (or sharing is off): the copy is the session.
		n.takeOverOne(e, owner)
		return nil
	}
	n.mu.Lock()
	dead := p.dead
	addr := p.m.PeerAddr()
	ownerRoute := p.m.Route
	named := p.backup // the backup the owner last named in its heartbeats
	n.mu.Unlock()
	if dead {
		if named != "" && named != n.name {
			// Our copy may be an old backup's: the named backup holds the
			// newest one, and it alone takes over.
			if fe, err := n.deferToNamedBackup(ctx, l, e, named); fe != nil || err != nil {
				return firstErr(fe, err)
			}
		}
		n.takeOverOne(e, owner)
		return nil
	}
	// The request was not routed here as the owner's backup (a stale cookie
	// names us or another server as primary): the owner is alive as far as
	// we know, so it serves the request, whatever the mode.
	staleCookie := l.Primary != "" && l.Primary != ownerRoute
	if mode == domain.FailoverVerify || staleCookie {
		st, err := n.locateAt(ctx, owner, l.ID)
		if err != nil {
			if refused(err, addr) {
				n.declareDead(owner, "connection refused")
				return nil
			}
			if n.waitDead(ctx, owner) {
				return nil
			}
			return session.ErrUnavailable
		}
		switch {
		case st.Have && st.Owner == owner:
			if l.Forwarded {
				return session.ErrUnavailable
			}
			return &session.ForwardError{Server: owner, Addr: n.addrOf(owner)}
		case st.Have && st.Owner != n.name && st.Owner != "":
			if l.Forwarded {
				return session.ErrUnavailable
			}
			if a := n.addrOf(st.Owner); a != "" {
				return &session.ForwardError{Server: st.Owner, Addr: a}
			}
			return session.ErrUnavailable
		case !st.Have:
			// The owner is alive but lost it (restarted before we noticed).
			n.takeOverOne(e, owner)
			return nil
		}
		return nil
	}
	// immediate: the owner hands it over, or it is dead.
	rec, other, err := n.relinquishAt(ctx, owner, l.ID)
	if err != nil {
		if refused(err, addr) {
			n.declareDead(owner, "connection refused")
			return nil
		}
		if n.waitDead(ctx, owner) {
			return nil
		}
		return session.ErrUnavailable
	}
	if rec != nil {
		n.install(rec, owner)
		return nil
	}
	switch {
	case other == "":
		n.takeOverOne(e, owner)
		return nil
	case other == n.name:
		return nil
	default:
		if l.Forwarded {
			return session.ErrUnavailable
		}
		if a := n.addrOf(other); a != "" {
			return &session.ForwardError{Server: other, Addr: a}
		}
		return session.ErrUnavailable
	}
}

// deferToNamedBackup asks the dead owner's named backup about a session we
// hold a copy of. If it holds a copy at least as new as ours, the request
// goes there (and our copy, stale or equal, is dropped); if it has none or
// is gone itself, both results are nil and our copy is the session.
func (n *Node) deferToNamedBackup(ctx context.Context, l session.Lookup, e *entry, named string) (*session.ForwardError, error) {
	addr := n.addrOf(named)
	n.mu.Lock()
	live := n.liveLocked(named)
	n.mu.Unlock()
	if addr == "" || !live {
		return nil, nil
	}
	st, err := n.locateAt(ctx, named, l.ID)
	if err != nil {
		if refused(err, addr) {
			n.declareDead(named, "connection refused")
			return nil, nil
		}
		return nil, session.ErrUnavailable
	}
	if !st.Have {
		return nil, nil
	}
	e.mu.Lock()
	r := e.rec
	ours := r != nil && session.Newer(r.Epoch, r.Version, st.Epoch, st.Version)
	if r != nil && !ours {
		e.rec = nil
		n.remove(r.ID, e)
	}
	e.mu.Unlock()
	if ours {
		return nil, nil
	}
	if l.Forwarded {
		return nil, session.ErrUnavailable
	}
	return &session.ForwardError{Server: named, Addr: n.addrOf(named)}, nil
}

// firstErr returns fe as an error if set, else err.
func firstErr(fe *session.ForwardError, err error) error {
	if fe != nil {
		return fe
	}
	return err
}

// takeOverOne takes over one copy whose owner is gone or lost it.
//
// The old owner is told, as for a takeover of all its sessions: a fence
// goes with our next heartbeat answer to it. It may be alive after all (a
// paused process, a partition) and still hold the session at the older
// epoch; without the fence it would serve that stale copy when it wakes,
// until a failback overwrote it.
func (n *Node) takeOverOne(e *entry, owner string) {
	backup := n.currentBackup()
	e.mu.Lock()
	var fence *Fence
	if r := e.rec; r != nil && r.Owner == owner && r.Owner != n.name {
		r.Epoch++
		r.Owner = n.name
		r.Backup = backup
		e.copiedTo = ""
		fence = &Fence{ID: r.ID, Epoch: r.Epoch}
	}
	e.mu.Unlock()
	if fence != nil {
		n.mu.Lock()
		n.onDemand[owner]++
		if p := n.peers[owner]; p != nil {
			p.fenced = append(p.fenced, *fence)
			p.fenceSeq++
		}
		n.mu.Unlock()
	}
}

// install takes a record the old owner relinquished to us.
func (n *Node) install(rec *session.Record, from string) {
	e := n.getOrCreate(rec.ID)
	e.mu.Lock()
	if cur := e.rec; cur == nil || session.Newer(rec.Epoch, rec.Version, cur.Epoch, cur.Version) {
		rec.Backup = n.currentBackup()
		e.rec = rec
		e.copiedTo = ""
		e.dropAt = from // it keeps a copy until our backup holds the session
		e.holder = from
		n.mu.Lock()
		n.relinq[from]++
		n.mu.Unlock()
	}
	e.mu.Unlock()
}

func (n *Node) locateAt(ctx context.Context, name, id string) (locateResp, error) {
	var st locateResp
	body, _ := json.Marshal(locateReq{From: n.name, ID: id})
	out, code, err := n.post(ctx, name, PathLocate, "application/json", body, n.callTimeout())
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("%w: locate %d", errPeerStatus, code)
	}
	if err := strictJSON(out, &st); err != nil {
		return st, err
	}
	return st, nil
}

// relinquishAt asks owner to hand id over. It returns the record (now ours),
// or the name of the server that owns it ("" when owner has no copy).
func (n *Node) relinquishAt(ctx context.Context, owner, id string) (*session.Record, string, error) {
	body, _ := json.Marshal(locateReq{From: n.name, ID: id})
	out, code, err := n.post(ctx, owner, PathRelinquish, "application/json", body, n.callTimeout())
	if err != nil {
		return nil, "", err
	}
	switch code {
	case http.StatusOK:
		b, err := DecodeBatch(out)
		if err != nil || len(b.Items) != 1 || b.Items[0].Rec.ID != id || b.Items[0].Rec.Owner != n.name {
			return nil, "", fmt.Errorf("%w: bad relinquish answer", errPeerStatus)
		}
		return b.Items[0].Rec, "", nil
	case http.StatusConflict, http.StatusNotFound:
		var st locateResp
		if err := strictJSON(out, &st); err != nil {
			return nil, "", err
		}
		return nil, st.Owner, nil
	}
	return nil, "", fmt.Errorf("%w: relinquish %d", errPeerStatus, code)
}

// errLookAgain: the session arrived here while we were looking for it.
var errLookAgain = errors.New("replication: session arrived here; look again")

// locateRounds is how many times locate asks every peer before it calls a
// session lost: a session moving between two peers (failback, relinquish)
// can be missed by one round that asks the new holder first and the old
// one after it let go.
const locateRounds = 3

// locate finds a session this server holds nothing of: forward to its
// owner, or to a server holding a copy when the owner is dead. Nobody has
// it, in several rounds: session.lost and ErrNotFound.
func (n *Node) locate(ctx context.Context, l session.Lookup) error {
	if l.Forwarded {
		// A peer thought we own it; do not bounce it around.
		return session.ErrUnavailable
	}
	n.mu.Lock()
	shared := n.sc.Session.Shared
	n.mu.Unlock()
	if !shared {
		n.record(domain.Event{Type: domain.EventSessionLost, Sessions: 1,
			Message: fmt.Sprintf("session %s…: not held here and session sharing is off on %s; a new session was started", l.ID[:8], n.name)})
		return session.ErrNotFound
	}
	for round := range locateRounds {
		if round > 0 {
			select {
			case <-ctx.Done():
				return session.ErrUnavailable
			case <-time.After(time.Duration(round) * 25 * time.Millisecond):
			}
		}
		err := n.locateRound(ctx, l)
		if !errors.Is(err, session.ErrNotFound) {
			return err
		}
		// It may have been handed to us (a failback) while we asked.
		if n.lookup(l.ID) != nil {
			return errLookAgain
		}
	}
	n.record(domain.Event{Type: domain.EventSessionLost, Sessions: 1,
		Message: fmt.Sprintf("session %s…: no live server holds it (cookie routes %q/%q); a new session was started", l.ID[:8], l.Primary, l.Backup)})
	return session.ErrNotFound
}

// locateRound asks every peer not known dead once, the cookie's servers
// first. ErrNotFound: every one answered that it holds nothing.
func (n *Node) locateRound(ctx context.Context, l session.Lookup) error {
	n.mu.Lock()
	var first, rest []string
	for name, p := range n.peers {
		if p.dead {
			continue
		}
		// Peers not heard yet (we just started) are asked too: one of
		// them may own the session.
		if p.m.Route == l.Primary || p.m.Route == l.Backup {
			first = append(first, name)
		} else {
			rest = append(rest, name)
		}
	}
	n.mu.Unlock()
	unsure := false
	var holder string
	for _, name := range append(first, rest...) {
		st, err := n.locateAt(ctx, name, l.ID)
		if err != nil {
			if !refused(err, n.addrOf(name)) {
				unsure = true
			}
			continue
		}
		if !st.Have {
			continue
		}
		if st.Owner == name {
			return &session.ForwardError{Server: name, Addr: n.addrOf(name)}
		}
		if st.Owner != n.name {
			n.mu.Lock()
			live := n.liveLocked(st.Owner)
			n.mu.Unlock()
			if live {
				if a := n.addrOf(st.Owner); a != "" {
					return &session.ForwardError{Server: st.Owner, Addr: a}
				}
			}
		}
		if holder == "" {
			holder = name
		}
	}
	if holder != "" {
		return &session.ForwardError{Server: holder, Addr: n.addrOf(holder)}
	}
	if unsure {
		return session.ErrUnavailable
	}
	return session.ErrNotFound
}

// New implements session.Store.
func (n *Node) New(_ context.Context, maxSessions int) (session.Txn, error) {
	n.mu.Lock()
	draining := n.draining
	backup := n.backup
	n.mu.Unlock()
	if draining {
		return nil, session.ErrDraining
	}
	if maxSessions > 0 {
		if owned, _, _ := n.Counts(); owned >= maxSessions {
			return nil, session.ErrTooManySessions
		}
	}
	now := n.now().UnixMilli()
	rec := &session.Record{ID: session.NewID(), Home: n.name, Owner: n.name, Backup: backup, Epoch: 1,
		Created: now, Access: now, Attrs: map[string]session.Value{}}
	e := &entry{}
	e.mu.Lock()
	n.tmu.Lock()
	n.table[rec.ID] = e
	n.tmu.Unlock()
	return &txn{n: n, e: e, work: rec, isNew: true}, nil
}

type txn struct {
	n     *Node
	e     *entry
	work  *session.Record
	isNew bool
	done  bool
}

func (t *txn) Record() *session.Record { return t.work }

func (t *txn) Routes() (string, string) {
	return t.n.routeOf(t.n.name), t.n.routeOf(t.n.currentBackup())
}

func (t *txn) Abort() {
	if t.done {
		return
	}
	t.done = true
	if t.isNew {
		t.n.remove(t.work.ID, t.e)
	}
	t.e.mu.Unlock()
}

func (t *txn) release() {
	t.done = true
	t.e.mu.Unlock()
}

// Commit stores the request's result and replicates it: sync waits for the
// backup, async queues it. A write that no backup holds is acknowledged
// as degraded.
func (t *txn) Commit(ctx context.Context, changed bool) (session.Result, error) {
	n, e, w := t.n, t.e, t.work
	if changed {
		w.Version++
	}
	now := n.now().UnixMilli()
	w.Access = now
	self := n.routeOf(n.name)
	for attempt := 0; ; attempt++ {
		n.mu.Lock()
		backup := n.backup
		shared := n.sc.Session.Shared
		sync := n.sc.Session.Replication != domain.ReplicationAsync
		others := len(n.peers) > 0
		to := n.sessionTimeout()
		n.mu.Unlock()
		if !shared || backup == "" {
			w.Backup = ""
			e.rec = w
			e.copiedTo = ""
			t.release()
			res := session.Result{Primary: self}
			if shared && others && changed && sync {
				res.Degraded = true
				n.degradedWrite()
			}
			return res, nil
		}
		w.Backup = backup
		if !sync || (!changed && e.copiedTo == backup) {
			e.rec = w
			var touch bool
			if !changed && e.copiedTo == backup {
				touch = now-e.touchSent > to.Milliseconds()/4
			}
			if changed || touch || e.copiedTo != backup {
				e.touchSent = now
				if changed {
					e.copiedTo = "" // unprotected until the flusher's batch is acknowledged
				}
				n.markDirty(e)
			}
			t.release()
			return session.Result{Primary: self, Backup: n.routeOf(backup)}, nil
		}
		res := make(chan sendResult, 1)
		sent := w.Clone()
		n.senderFor(backup).enqueue(Item{Op: opPut, Rec: sent}, e, res)
		var r sendResult
		select {
		case r = <-res:
		case <-ctx.Done():
			r = sendResult{err: ctx.Err()}
		}
		if r.err == nil && r.st == stFenced {
			// The backup holds a newer epoch: it owns the session now.
			e.rec = nil
			n.remove(w.ID, e)
			t.release()
			return session.Result{}, &session.ForwardError{Server: backup, Addr: n.addrOf(backup)}
		}
		if r.err == nil {
			e.rec = w
			e.touchSent = now
			n.copiedLocked(e, backup)
			t.release()
			return session.Result{Primary: self, Backup: n.routeOf(backup)}, nil
		}
		// Not acknowledged by the backup: keep the write here (it may have
		// reached the backup; a resend of the same version is idempotent),
		// never acknowledge it as replicated.
		e.rec = w
		e.copiedTo = ""
		if attempt >= 3 || ctx.Err() != nil {
			t.release()
			return session.Result{}, session.ErrUnavailable
		}
		// A refused connection: the backup's process is gone, retry with the
		// next backup. A slow backup: retry; it is replaced if it stays
		// silent for the heartbeat timeout.
		e.mu.Unlock()
		if errors.Is(r.err, errRefused) {
			n.declareDead(backup, "connection refused")
		}
		e.mu.Lock()
		if e.rec != w || w.Owner != n.name {
			t.done = true
			e.mu.Unlock()
			return session.Result{}, session.ErrUnavailable
		}
	}
}

func (n *Node) degradedWrite() {
	n.m.degraded.Inc()
	n.mu.Lock()
	now := n.now()
	emit := now.Sub(n.degradedAt) > 10*time.Second
	if emit {
		n.degradedAt = now
	}
	n.mu.Unlock()
	if emit {
		n.record(domain.Event{Type: domain.EventReplicationLag, Sessions: 1,
			Message: n.name + " acknowledged a sync write held by this server only: no live backup"})
	}
}
