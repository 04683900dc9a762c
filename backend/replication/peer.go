package replication

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"tandem/backend/domain"
	"tandem/backend/pki"
	"tandem/backend/session"
)

// Internal endpoint paths, on every managed server's own listener.
const (
	PathHeartbeat  = "/internal/v1/heartbeat"
	PathRecords    = "/internal/v1/records"
	PathRelinquish = "/internal/v1/relinquish"
	PathLocate     = "/internal/v1/locate"
	PathEvents     = "/internal/v1/events"
	PathStatus     = "/internal/v1/status"
)

// Record statuses in a /records answer, one byte per item.
const (
	stAccepted byte = 'a'
	stStale    byte = 's' // not newer: ignored (already held)
	stFenced   byte = 'f' // the holder knows a higher epoch
)

var (
	errPeerStatus = errors.New("replication: peer answered an error")
	// errPeerDead fails a write that waits for a peer declared dead: the
	// writer goes on to the next backup.
	errPeerDead = errors.New("replication: peer declared dead")
)

type hbReq struct {
	From     string `json:"from"`
	Inc      string `json:"inc"`
	Backup   string `json:"backup"`
	FenceAck uint64 `json:"fence_ack"`
}

type hbResp struct {
	Name     string  `json:"name"`
	Inc      string  `json:"inc"`
	Fenced   []Fence `json:"fenced"`
	FenceSeq uint64  `json:"fence_seq"`
}

type locateReq struct {
	From string `json:"from"`
	ID   string `json:"id"`
}

type locateResp struct {
	Have    bool   `json:"have"`
	Owner   string `json:"owner"`
	Epoch   uint64 `json:"epoch"`
	Version uint64 `json:"version"`
}

// post sends body to peer name's path and returns the answer body.
func (n *Node) post(ctx context.Context, name, path, ctype string, body []byte, timeout time.Duration) ([]byte, int, error) {
	addr := n.addrOf(name)
	if addr == "" {
		return nil, 0, fmt.Errorf("replication: unknown peer %q", name)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if calls := n.callsTo(name); calls != nil {
		// Declared dead meanwhile: stop waiting for it.
		defer context.AfterFunc(calls, cancel)()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.scheme+"://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return nil, 0, fmt.Errorf("replication: request: %w", err)
	}
	if !n.mtls { // on mutual TLS the certificate is the credential
		req.Header.Set("Authorization", "Bearer "+n.token)
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := n.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("replication: %s%s: %w", name, path, err)
	}
	defer resp.Body.Close()
	if n.mtls && pki.PeerName(resp.TLS) != name {
		// Verified against the domain CA, but another node answers at
		// name's address: not name.
		return nil, 0, fmt.Errorf("replication: %s%s: answered by another node's certificate", name, path)
	}
	if n.mtls && n.revoked != nil && n.revoked(resp.TLS.PeerCertificates[0].SerialNumber.Text(16)) {
		return nil, 0, fmt.Errorf("replication: %s%s: its certificate is revoked", name, path)
	}
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("replication: read %s%s: %w", name, path, err)
	}
	return out, resp.StatusCode, nil
}

// declaredDead reports whether peer name is declared dead (and not back).
func (n *Node) declaredDead(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.peers[name]
	return p != nil && p.dead
}

// callsTo returns the context that ends when peer name, live now, is
// declared dead; nil when it is unknown or dead already (calls to a dead
// peer, such as the heartbeats that notice it is back, run their course).
func (n *Node) callsTo(name string) context.Context {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.peers[name]
	if p == nil || p.dead {
		return nil
	}
	if p.calls == nil {
		p.calls, p.endCalls = context.WithCancel(context.Background())
	}
	return p.calls
}

func (n *Node) callTimeout() time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return min(n.timeout(), 5*time.Second)
}

// heartbeat sends one heartbeat to name, renewing our lease from it and
// dropping what it took over from us.
func (n *Node) heartbeat(ctx context.Context, name string) error {
	n.mu.Lock()
	p := n.peers[name]
	if p == nil {
		n.mu.Unlock()
		return nil
	}
	req := hbReq{From: n.name, Inc: n.inc, Backup: n.backup, FenceAck: p.fenceAck}
	if name == n.backup && n.handoverTo != "" {
		req.Backup = n.handoverTo // it is no longer the one that takes over
	}
	addr := p.m.PeerAddr()
	to := min(n.timeout()/2, time.Second)
	n.mu.Unlock()
	body, _ := json.Marshal(req)
	sent := n.now()
	out, code, err := n.post(ctx, name, PathHeartbeat, "application/json", body, to)
	if err != nil {
		if ctx.Err() == nil && refused(err, addr) {
			n.declareDead(name, "connection refused")
		}
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("%w: heartbeat %d", errPeerStatus, code)
	}
	var resp hbResp
	if err := strictJSON(out, &resp); err != nil || resp.Name != name || resp.Inc == "" {
		return fmt.Errorf("%w: bad heartbeat answer", errPeerStatus)
	}
	if !n.markHeard(name, resp.Inc) {
		return nil
	}
	// Drop what the peer took over before trusting the lease.
	for _, f := range resp.Fenced {
		if e := n.lookup(f.ID); e != nil {
			e.mu.Lock()
			if r := e.rec; r != nil && r.Owner == n.name && r.Epoch < f.Epoch {
				e.rec = nil
				n.remove(f.ID, e)
			}
			e.mu.Unlock()
		}
	}
	n.mu.Lock()
	handedOver := false
	if p := n.peers[name]; p != nil && !p.dead {
		p.fenceAck = resp.FenceSeq
		if until := LeaseEnd(sent, n.timeout()); until.After(p.leaseUntil) {
			p.leaseUntil = until
		}
		if name == n.backup && req.Backup != name && req.Backup == n.handoverTo {
			n.handoverAcked = true
			n.recomputeLocked()
			handedOver = n.backup != name
		}
	}
	next := n.backup
	n.mu.Unlock()
	if handedOver {
		// The new backup learns at once that it takes over now: until its
		// next heartbeat from us, no server would think so.
		_ = n.heartbeat(ctx, next)
		n.kickCopier()
	}
	return nil
}

// leaseOK reports whether we may serve a session whose copy is on b.
func (n *Node) leaseOK(b string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.peers[b]
	return p == nil || p.dead || n.now().Before(p.leaseUntil)
}

// ensureLease waits until we hold a lease from b, or b is known dead.
func (n *Node) ensureLease(ctx context.Context, b string) error {
	n.mu.Lock()
	deadline := n.now().Add(n.timeout() + n.interval())
	n.mu.Unlock()
	for {
		if n.leaseOK(b) {
			return nil
		}
		_ = n.heartbeat(ctx, b)
		if n.leaseOK(b) {
			return nil
		}
		if n.now().After(deadline) || ctx.Err() != nil {
			return session.ErrUnavailable
		}
		select {
		case <-ctx.Done():
			return session.ErrUnavailable
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitDead waits until name is declared dead (true) or the deadline.
func (n *Node) waitDead(ctx context.Context, name string) bool {
	n.mu.Lock()
	deadline := n.now().Add(n.timeout() + n.interval())
	n.mu.Unlock()
	for {
		n.mu.Lock()
		p := n.peers[name]
		dead := p == nil || p.dead
		n.mu.Unlock()
		if dead {
			return true
		}
		if n.now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// postRecords sends a batch to name and returns one status per item.
func (n *Node) postRecords(ctx context.Context, name string, items []Item) ([]byte, error) {
	n.mu.Lock()
	b := Batch{From: n.name, Inc: n.inc, Items: items}
	addr := ""
	if p := n.peers[name]; p != nil {
		addr = p.m.PeerAddr()
	}
	n.mu.Unlock()
	body := b.Encode(make([]byte, 0, 64*len(items)+32))
	out, code, err := n.post(ctx, name, PathRecords, "application/octet-stream", body, n.callTimeout())
	if err != nil {
		if ctx.Err() == nil && refused(err, addr) {
			return nil, fmt.Errorf("%w: %w", errRefused, err)
		}
		return nil, err
	}
	if code != http.StatusOK || len(out) != len(items) {
		return nil, fmt.Errorf("%w: records %d", errPeerStatus, code)
	}
	n.markHeardNoInc(name)
	return out, nil
}

var errRefused = errors.New("replication: connection refused")

// markHeardNoInc notes a successful exchange with name.
func (n *Node) markHeardNoInc(name string) {
	n.mu.Lock()
	if p := n.peers[name]; p != nil && p.heard && !p.dead {
		p.lastHeard = n.now()
	}
	n.mu.Unlock()
}

// ---- group-commit sender ----

type sendResult struct {
	st  byte
	err error
}

type sendItem struct {
	it   Item
	e    *entry
	res  chan sendResult // nil: async
	enq  time.Time
	sent *session.Record
}

// sender batches items for one peer: whatever queued while the previous
// round trip ran goes in the next one, so concurrent sync writes share a
// request (group commit) and async ones flow with a bounded queue.
type sender struct {
	n  *Node
	to string
	q  chan *sendItem
}

// senderWorkers is 1: one round trip in flight per peer, so whatever queues
// meanwhile goes in the next batch (measured: fewer, bigger batches cost
// less CPU per write than two pipelined workers; see BENCHMARKS.md).
const senderWorkers = 1

func (n *Node) senderFor(name string) *sender {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s := n.senders[name]; s != nil {
		return s
	}
	s := &sender{n: n, to: name, q: make(chan *sendItem, 8192)}
	n.senders[name] = s
	ctx := n.runCtx
	if ctx == nil {
		ctx = context.Background()
	}
	for range senderWorkers {
		go s.loop(ctx)
	}
	return s
}

func (s *sender) enqueue(it Item, e *entry, res chan sendResult) {
	s.q <- &sendItem{it: it, e: e, res: res, enq: s.n.now(), sent: it.Rec}
}

func (s *sender) loop(ctx context.Context) {
	for {
		var first *sendItem
		select {
		case <-ctx.Done():
			// Fail whatever is queued so no caller waits forever.
			for {
				select {
				case si := <-s.q:
					if si.res != nil {
						si.res <- sendResult{err: ctx.Err()}
					}
				default:
					return
				}
			}
		case first = <-s.q:
		}
		batch := []*sendItem{first}
	more:
		for len(batch) < 1000 {
			select {
			case si := <-s.q:
				batch = append(batch, si)
			default:
				break more
			}
		}
		if s.n.declaredDead(s.to) {
			// The writes that wait go on to the next backup at once (Commit
			// tries again): sent, they would wait out the call's timeout, as
			// calls to a peer already dead are not cut short. A session's
			// first request after its backup froze waited 2x the heartbeat
			// timeout so (bench/freeze).
			kept := batch[:0]
			for _, si := range batch {
				if si.res != nil {
					si.res <- sendResult{err: errPeerDead}
					continue
				}
				kept = append(kept, si)
			}
			if batch = kept; len(batch) == 0 {
				continue
			}
		}
		items := make([]Item, len(batch))
		for i, si := range batch {
			items[i] = si.it
		}
		start := s.n.now()
		sts, err := s.n.postRecords(ctx, s.to, items)
		s.n.m.batchSize.Observe(float64(len(batch)))
		for i, si := range batch {
			r := sendResult{err: err}
			if err == nil {
				r.st = sts[i]
			}
			if si.res != nil {
				si.res <- r
			}
		}
		_ = start
		// Never inline: the takeover waits for entry locks held by requests
		// whose items wait in this sender's queue.
		if err != nil && errors.Is(err, errRefused) {
			s.n.reportDead(s.to)
		}
	}
}

// sendDropLocked notes that the old copy holder may drop its copy now that
// backup holds the session; the copier sends the drop and clears dropAt
// only when the old holder confirmed it. Until then the old holder's lease
// is required too (it may still take the session over). e.mu is held.
func (n *Node) sendDropLocked(e *entry, backup string) {
	if e.dropAt == "" || e.rec == nil {
		return
	}
	if e.dropAt == backup {
		e.dropAt = ""
		return
	}
	n.kickCopier()
}

func (s *sender) enqueueNoWait(it Item) {
	select {
	case s.q <- &sendItem{it: it, enq: s.n.now(), sent: it.Rec}:
	default:
	}
}

// ---- copier: keep every owned session on the current backup ----

func (n *Node) copierLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.kick:
		case <-t.C:
		}
		n.copyRound(ctx)
	}
}

// copyRound copies owned sessions missing from the backup; it returns how
// many remain unprotected.
func (n *Node) copyRound(ctx context.Context) int {
	n.mu.Lock()
	backup := n.backup
	prev := n.lastCopied
	n.mu.Unlock()
	if backup == "" {
		return -1
	}
	var todo []*entry
	for _, e := range n.entries() {
		e.mu.Lock()
		if e.rec != nil && e.rec.Owner == n.name && e.copiedTo != backup {
			todo = append(todo, e)
		}
		e.mu.Unlock()
	}
	copied := 0
	for len(todo) > 0 && ctx.Err() == nil {
		chunk := todo[:min(len(todo), 1000)]
		todo = todo[len(chunk):]
		items := make([]Item, 0, len(chunk))
		es := make([]*entry, 0, len(chunk))
		for _, e := range chunk {
			e.mu.Lock()
			if e.rec != nil && e.rec.Owner == n.name && e.copiedTo != backup && n.unleased(e) == "" {
				// The previous holder's lease stays required (unleased
				// checks e.holder) and it is told to drop its copy once
				// the new backup acknowledged (copiedLocked).
				e.rec.Backup = backup
				items = append(items, Item{Op: opPut, Rec: e.rec.Clone()})
				es = append(es, e)
			}
			e.mu.Unlock()
		}
		if len(items) == 0 {
			continue
		}
		sts, err := n.postRecords(ctx, backup, items)
		if err != nil {
			if errors.Is(err, errRefused) {
				n.declareDead(backup, "connection refused")
			}
			n.log.Warn("replication: copy to backup failed", "backup", backup, "err", err)
			return len(todo) + len(items)
		}
		for i, e := range es {
			sent := items[i].Rec
			e.mu.Lock()
			if r := e.rec; r != nil && r.Owner == n.name {
				switch {
				case sts[i] == stFenced && r.Epoch <= sent.Epoch:
					e.rec = nil
					n.remove(r.ID, e)
				case sts[i] != stFenced && r.Epoch == sent.Epoch && r.Version == sent.Version:
					n.copiedLocked(e, backup)
					copied++
				}
			}
			e.mu.Unlock()
		}
	}
	n.sendDrops(ctx, backup)
	n.mu.Lock()
	changed := n.backup == backup && prev != backup
	if changed {
		n.lastCopied = backup
	}
	n.mu.Unlock()
	if changed && copied > 0 {
		n.record(domain.Event{Type: domain.EventBackupChanged, Peer: backup, Sessions: copied,
			Message: fmt.Sprintf("backup of %s is now %s (was %s); %d sessions copied", n.name, backup, orNone(prev), copied)})
	}
	return 0
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// ---- failback ----

// failback pushes the sessions whose home is name back to it in batches.
func (n *Node) failback(ctx context.Context, name string) {
	start := n.now()
	total := 0
	later := 0 // candidates left for the next failback round
	// One pass over the table finds every candidate; each batch re-checks
	// under the entry lock.
	var all []*entry
	for _, e := range n.entries() {
		e.mu.Lock()
		if r := e.rec; r != nil && r.Owner == n.name && r.Home == name {
			all = append(all, e)
		}
		e.mu.Unlock()
	}
	for ctx.Err() == nil {
		n.mu.Lock()
		p := n.peers[name]
		if p == nil || !n.liveLocked(name) || !n.sc.Session.Failback {
			n.mu.Unlock()
			break
		}
		pBackup := p.backup
		n.mu.Unlock()
		type cand struct {
			id string
			e  *entry
		}
		var cands []cand
		for len(all) > 0 && len(cands) < failbackBatch {
			e := all[len(all)-1]
			all = all[:len(all)-1]
			e.mu.Lock()
			if r := e.rec; r != nil && r.Owner == n.name && r.Home == name {
				if n.unleased(e) == "" {
					cands = append(cands, cand{r.ID, e})
				} else {
					later++ // maybe stale: not handed over until a lease confirms it
				}
			}
			e.mu.Unlock()
		}
		if len(cands) == 0 {
			if later == 0 {
				n.mu.Lock()
				if p := n.peers[name]; p != nil {
					p.tookOverInc = ""
				}
				n.mu.Unlock()
			}
			break
		}
		sort.Slice(cands, func(i, j int) bool { return cands[i].id < cands[j].id })
		var items []Item
		var locked []*entry
		var oldEpochs []uint64
		for _, c := range cands {
			c.e.mu.Lock()
			r := c.e.rec
			if r == nil || r.Owner != n.name || r.Home != name || n.unleased(c.e) != "" {
				c.e.mu.Unlock()
				continue
			}
			// r is replaced by h or removed below, so h may share its attributes.
			hv := *r
			h := &hv
			h.Epoch++
			h.Owner = name
			h.Backup = pBackup
			items = append(items, Item{Op: opPut, Rec: h})
			locked = append(locked, c.e)
			oldEpochs = append(oldEpochs, r.Epoch)
		}
		sts, err := n.postRecords(ctx, name, items)
		if err != nil && !errors.Is(err, errRefused) {
			// Ambiguous (a timeout): the batch may have been installed. Never
			// keep serving what the home server may own now: treat it as
			// handed over. If it did not arrive, the first request for such a
			// session finds the home server without it and takes it back
			// with a higher epoch.
			n.log.Warn("replication: failback batch unconfirmed; treating it as handed over", "peer", name, "sessions", len(items), "err", err)
			sts = bytes.Repeat([]byte{stAccepted}, len(items))
			err = nil
		}
		drops := map[string][]Item{} // by server holding our copy of a session handed back
		for i, e := range locked {
			if err == nil {
				h := items[i].Rec
				id := h.ID
				if sts[i] == stAccepted || sts[i] == stStale || sts[i] == stFenced {
					// Our copies (on our backup, or on an earlier one) are
					// stale from now on, whoever the home names as its
					// backup: the name came from its first heartbeats and
					// its own copy goes to its current backup. A drop only
					// removes a copy we own at this epoch or lower.
					// (e.copiedTo, when set, is e.holder.)
					drop := func(hd string) {
						if hd != "" && hd != name {
							drops[hd] = append(drops[hd], Item{Op: opDrop, Rec: &session.Record{ID: id, Owner: n.name, Epoch: oldEpochs[i]}})
						}
					}
					drop(e.holder)
					if e.dropAt != e.holder {
						drop(e.dropAt)
					}
					if pBackup == n.name && sts[i] != stFenced {
						e.rec = h // we stay its backup
						e.copiedTo, e.holder, e.dropAt = "", "", ""
					} else {
						e.rec = nil
						n.remove(id, e)
					}
					if sts[i] != stFenced {
						total++
					}
				}
			}
			e.mu.Unlock()
		}
		if err != nil {
			n.log.Warn("replication: failback batch failed", "peer", name, "err", err)
			break
		}
		for holder, items := range drops {
			if _, err := n.postRecords(ctx, holder, items); err != nil {
				n.log.Warn("replication: drop after failback failed", "holder", holder, "err", err)
			}
		}
	}
	if total > 0 {
		d := n.now().Sub(start)
		n.m.failbacks.Add(float64(total))
		rate := float64(total) / max(d.Seconds(), 1e-6)
		n.record(domain.Event{Type: domain.EventFailback, Peer: name, Sessions: total,
			Message: fmt.Sprintf("%s failed back %d sessions to %s in %s (%.0f sessions/s)", n.name, total, name, d.Round(time.Millisecond), rate)})
	}
}

func strictJSON(b []byte, out any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("%w: %w", ErrBadBody, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data", ErrBadBody)
	}
	return nil
}

// sendDrops tells old copy holders to drop the copies of sessions the
// current backup now holds, and clears dropAt once they confirmed.
func (n *Node) sendDrops(ctx context.Context, backup string) {
	by := map[string][]*entry{}
	var items = map[string][]Item{}
	for _, e := range n.entries() {
		e.mu.Lock()
		if r := e.rec; r != nil && r.Owner == n.name && e.dropAt != "" && e.copiedTo == backup && e.dropAt != backup {
			by[e.dropAt] = append(by[e.dropAt], e)
			items[e.dropAt] = append(items[e.dropAt], Item{Op: opDrop, Rec: &session.Record{ID: r.ID, Owner: n.name, Epoch: r.Epoch}})
		} else if e.dropAt != "" && (r == nil || r.Owner != n.name || e.dropAt == backup) {
			e.dropAt = ""
		}
		e.mu.Unlock()
	}
	for holder, es := range by {
		_, err := n.postRecords(ctx, holder, items[holder])
		if err != nil && !errors.Is(err, errRefused) {
			continue // keep dropAt: its lease stays required
		}
		for _, e := range es {
			e.mu.Lock()
			if e.dropAt == holder {
				e.dropAt = ""
			}
			e.mu.Unlock()
		}
	}
}
