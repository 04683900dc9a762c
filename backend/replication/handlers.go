package replication

import (
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"

	"tandem/backend/pki"
	"tandem/backend/route"
	"tandem/backend/session"
	"tandem/backend/wire"
)

// Handler serves the internal peer endpoints under /internal/v1/. Every
// one requires "Authorization: Bearer <node token>"; bodies are decoded
// strictly and a rejected request changes nothing.
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathHeartbeat, n.auth(n.handleHeartbeat))
	mux.HandleFunc("POST "+PathRecords, n.auth(n.handleRecords))
	mux.HandleFunc("POST "+PathLocate, n.auth(n.handleLocate))
	mux.HandleFunc("POST "+PathRelinquish, n.auth(n.handleRelinquish))
	mux.HandleFunc("GET "+PathEvents, n.auth(n.handleEvents))
	mux.HandleFunc("GET "+PathStatus, n.auth(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, StatusInfo{Heartbeat: n.Status(), Incarnation: n.Incarnation()})
	}))
	return mux
}

// StatusInfo is the answer of GET /internal/v1/status.
type StatusInfo struct {
	wire.Heartbeat
	Incarnation string `json:"incarnation"`
}

// auth admits a peer's call: on mutual TLS, a certificate the listener
// verified (domain CA, not revoked) named after a member of the cluster,
// the token being no credential; on plain HTTP, the node token.
func (n *Node) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n.pauseCheck()
		if n.admit(w, r, r.Header.Get("Authorization")) {
			h(w, r)
		}
	}
}

// admit checks a peer's credential (see auth) and answers the refusal.
func (n *Node) admit(w http.ResponseWriter, r *http.Request, bearer string) bool {
	if n.mtls {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			writeErr(w, http.StatusUnauthorized, "unauthorized", "a member's certificate is required")
			return false
		}
		leaf := r.TLS.PeerCertificates[0]
		if n.revoked != nil && n.revoked(leaf.SerialNumber.Text(16)) {
			writeErr(w, http.StatusUnauthorized, "unauthorized", "revoked certificate")
			return false
		}
		if cn := leaf.Subject.CommonName; cn == n.name || !n.isMember(cn) {
			writeErr(w, http.StatusForbidden, "forbidden", "not a member of this cluster")
			return false
		}
		return true
	}
	want := []byte("Bearer " + n.token)
	if n.token == "" || subtle.ConstantTimeCompare([]byte(bearer), want) != 1 {
		writeErr(w, http.StatusUnauthorized, "unauthorized", "missing or wrong node token")
		return false
	}
	return true
}

// ForwardHandler serves, on the internal listener, the users' requests a
// peer forwarded to this server as their session's owner: only a member
// may forward (its certificate, or the node token on plain HTTP), and the
// credential is removed before app sees the request.
func (n *Node) ForwardHandler(app http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(session.HeaderForwarded) == "" {
			http.NotFound(w, r)
			return
		}
		bearer := r.Header.Get(session.HeaderPeerAuth)
		r.Header.Del(session.HeaderPeerAuth)
		if n.admit(w, r, bearer) {
			app.ServeHTTP(w, r)
		}
	})
}

// Forwarding is how this node's session middleware reaches an owner.
func (n *Node) Forwarding() session.Forwarding {
	return session.Forwarding{TLS: n.clientTLS, Token: n.token}
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_body", "body unreadable or too large")
		return nil, false
	}
	return b, true
}

// fromPeer reports whether name is a peer and, on mutual TLS, the one
// whose certificate made the call: a member cannot speak for another.
func (n *Node) fromPeer(r *http.Request, name string) bool {
	if !n.isPeer(name) {
		return false
	}
	if n.mtls {
		return pki.PeerName(r.TLS) == name
	}
	return true
}

func (n *Node) isPeer(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.peers[name] != nil
}

func (n *Node) isMember(name string) bool {
	return name == n.name || n.isPeer(name)
}

func (n *Node) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r, 4096)
	if !ok {
		return
	}
	var req hbReq
	if err := strictJSON(b, &req); err != nil || !n.fromPeer(r, req.From) || req.Inc == "" || len(req.Inc) > 64 ||
		(req.Backup != "" && !n.isMember(req.Backup)) {
		writeErr(w, http.StatusBadRequest, "bad_body", "bad heartbeat")
		return
	}
	if !n.markHeardFrom(req.From, req.Inc, req.Backup, true) {
		writeErr(w, http.StatusConflict, "stale_incarnation", "message from a previous incarnation")
		return
	}
	n.mu.Lock()
	p := n.peers[req.From]
	resp := hbResp{Name: n.name, Inc: n.inc, Fenced: []Fence{}}
	if p != nil {
		p.backup = req.Backup
		if req.FenceAck == p.fenceSeq {
			p.fenced = nil
		}
		resp.Fenced = append(resp.Fenced, p.fenced...)
		resp.FenceSeq = p.fenceSeq
	}
	n.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

// handleRecords applies a batch of puts and drops from a peer, answering
// one status byte per item.
func (n *Node) handleRecords(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, 256<<20)
	if !ok {
		return
	}
	b, err := DecodeBatch(body)
	if err != nil || !n.fromPeer(r, b.From) || b.Inc == "" || len(b.Inc) > 64 {
		writeErr(w, http.StatusBadRequest, "bad_body", "bad record batch")
		return
	}
	for _, it := range b.Items {
		rec := it.Rec
		if !route.ValidID(rec.ID) || !n.isMember(rec.Owner) || (it.Op == opPut && (rec.Epoch == 0 || !n.isMember(rec.Home) ||
			(rec.Backup != "" && !n.isMember(rec.Backup)))) {
			writeErr(w, http.StatusBadRequest, "bad_body", "bad record in batch")
			return
		}
		// A put comes from its owner, or hands the session to us.
		if it.Op == opPut && rec.Owner != b.From && rec.Owner != n.name {
			writeErr(w, http.StatusBadRequest, "bad_body", "put for a session the sender does not own")
			return
		}
		if it.Op == opDrop && rec.Owner != b.From {
			writeErr(w, http.StatusBadRequest, "bad_body", "drop for a session the sender does not own")
			return
		}
	}
	if !n.markHeard(b.From, b.Inc) {
		writeErr(w, http.StatusConflict, "stale_incarnation", "message from a previous incarnation")
		return
	}
	sts := make([]byte, len(b.Items))
	var mine []*entry // handed to us: copy to our backup before answering
	for i, it := range b.Items {
		sts[i] = n.apply(it, b.From, &mine)
	}
	if len(mine) > 0 {
		n.protect(r, mine, b.From)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(sts)
}

// apply applies one item; e.mu is taken briefly, no network.
func (n *Node) apply(it Item, from string, mine *[]*entry) byte {
	rec := it.Rec
	if it.Op == opDrop {
		e := n.lookup(rec.ID)
		if e == nil {
			return stAccepted
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if cur := e.rec; cur != nil && cur.Owner == rec.Owner && cur.Owner != n.name && cur.Epoch <= rec.Epoch {
			e.rec = nil
			n.remove(rec.ID, e)
		}
		return stAccepted
	}
	e := n.getOrCreate(rec.ID)
	e.mu.Lock()
	defer e.mu.Unlock()
	cur := e.rec
	if cur != nil {
		if rec.Epoch < cur.Epoch {
			return stFenced
		}
		if rec.Epoch == cur.Epoch && cur.Owner != rec.Owner {
			// Two owners claim the same epoch: keep ours, refuse theirs.
			return stFenced
		}
		if !session.Newer(rec.Epoch, rec.Version, cur.Epoch, cur.Version) {
			if rec.Access > cur.Access {
				cur.Access = rec.Access
			}
			return stStale
		}
	}
	e.rec = rec
	if rec.Owner == n.name {
		// Failback: it is ours again. The sender keeps a copy when it is
		// our backup; otherwise our backup gets one before we answer.
		e.copiedTo, e.holder, e.dropAt = "", "", ""
		if rec.Backup == from {
			e.copiedTo, e.holder = from, from
		} else {
			*mine = append(*mine, e)
		}
	} else {
		e.copiedTo, e.holder, e.dropAt = "", "", "" // owner-side state; this is a copy now
	}
	return stAccepted
}

// protect copies sessions handed to us to our backup (unless that is the
// sender, which keeps its copy).
func (n *Node) protect(r *http.Request, es []*entry, from string) {
	backup := n.currentBackup()
	if backup == "" || backup == from {
		return
	}
	items := make([]Item, 0, len(es))
	sent := make([]*entry, 0, len(es))
	for _, e := range es {
		e.mu.Lock()
		if e.rec != nil && e.rec.Owner == n.name {
			e.rec.Backup = backup
			items = append(items, Item{Op: opPut, Rec: e.rec.Clone()})
			sent = append(sent, e)
		}
		e.mu.Unlock()
	}
	sts, err := n.postRecords(r.Context(), backup, items)
	if err != nil {
		n.log.Warn("replication: copying handed-over sessions to backup failed", "backup", backup, "err", err)
		n.kickCopier()
		return
	}
	for i, e := range sent {
		e.mu.Lock()
		if e.rec != nil && e.rec.Owner == n.name && sts[i] != stFenced && e.rec.Version == items[i].Rec.Version && e.rec.Epoch == items[i].Rec.Epoch {
			n.copiedLocked(e, backup)
		}
		e.mu.Unlock()
	}
}

func (n *Node) handleLocate(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r, 4096)
	if !ok {
		return
	}
	var req locateReq
	if err := strictJSON(b, &req); err != nil || !n.fromPeer(r, req.From) || !route.ValidID(req.ID) {
		writeErr(w, http.StatusBadRequest, "bad_body", "bad locate request")
		return
	}
	var resp locateResp
	if e := n.lookup(req.ID); e != nil {
		e.mu.Lock()
		if rec := e.rec; rec != nil {
			resp = locateResp{Have: true, Owner: rec.Owner, Epoch: rec.Epoch, Version: rec.Version}
		}
		e.mu.Unlock()
	}
	writeJSON(w, http.StatusOK, resp)
}

// handleRelinquish hands a session we own to the asking peer (immediate
// failover when the client cannot reach us): epoch+1, and we keep a copy
// until the new owner's backup holds it.
func (n *Node) handleRelinquish(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r, 4096)
	if !ok {
		return
	}
	var req locateReq
	if err := strictJSON(b, &req); err != nil || !n.fromPeer(r, req.From) || !route.ValidID(req.ID) {
		writeErr(w, http.StatusBadRequest, "bad_body", "bad relinquish request")
		return
	}
	e := n.lookup(req.ID)
	if e == nil {
		writeJSON(w, http.StatusNotFound, locateResp{})
		return
	}
	e.mu.Lock()
	cur := e.rec
	if cur == nil {
		e.mu.Unlock()
		writeJSON(w, http.StatusNotFound, locateResp{})
		return
	}
	if cur.Owner == n.name && session.ClientGone(r) {
		// The asker gave up on this call (it sat in our socket while this
		// process was frozen, and the asker took the session over or
		// failed it back meanwhile): handing the session over now would
		// leave it with no owner.
		e.mu.Unlock()
		writeErr(w, http.StatusServiceUnavailable, "gone", "the asker closed the connection")
		return
	}
	if cur.Owner != n.name {
		st := locateResp{Have: true, Owner: cur.Owner, Epoch: cur.Epoch, Version: cur.Version}
		e.mu.Unlock()
		writeJSON(w, http.StatusConflict, st)
		return
	}
	h := cur.Clone()
	h.Epoch++
	h.Owner = req.From
	h.Backup = n.name
	e.rec = h.Clone()
	e.copiedTo, e.holder, e.dropAt = "", "", "" // a copy now
	e.mu.Unlock()
	n.log.Info("replication: relinquished a session", "to", req.From)
	batch := Batch{From: n.name, Inc: n.Incarnation(), Items: []Item{{Op: opPut, Rec: h}}}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(batch.Encode(nil))
}

func (n *Node) handleEvents(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, n.Events())
}
