package replication

import (
	"sort"
	"time"

	"tandem/backend/domain"
	"tandem/backend/session"
)

// Inspect describes the session id as this server holds it (owned or as a
// copy), for the admin server's session inspector; ok is false when this
// server holds no such session. Attribute values only with values set.
func (n *Node) Inspect(id string, values bool) (info domain.SessionInfo, ok bool) {
	e := n.lookup(id)
	if e == nil {
		return info, false
	}
	n.mu.Lock()
	to := n.sessionTimeout()
	n.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rec == nil {
		return info, false
	}
	return n.describe(e.rec, to, values), true
}

// Owned lists the sessions this server owns, ordered by id, from offset
// (at most limit), and how many it owns in all.
func (n *Node) Owned(offset, limit int) (page []domain.SessionInfo, total int) {
	n.mu.Lock()
	to := n.sessionTimeout()
	n.mu.Unlock()
	var recs []*session.Record
	for _, e := range n.entries() {
		e.mu.Lock()
		if e.rec != nil && e.rec.Owner == n.name {
			recs = append(recs, e.rec.Clone())
		}
		e.mu.Unlock()
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	total = len(recs)
	if offset > total {
		offset = total
	}
	recs = recs[offset:min(total, offset+limit)]
	page = make([]domain.SessionInfo, len(recs))
	for i, r := range recs {
		page[i] = n.describe(r, to, false)
	}
	return page, total
}

// describe turns a record into what the inspector shows; r is not changed.
func (n *Node) describe(r *session.Record, timeout time.Duration, values bool) domain.SessionInfo {
	role := domain.SessionBackupCopy
	if r.Owner == n.name {
		role = domain.SessionOwner
	}
	info := domain.SessionInfo{
		ID: r.ID, Owner: r.Owner, Backup: r.Backup, Home: r.Home,
		Epoch: r.Epoch, Version: r.Version, Bytes: r.Size(),
		CreatedAt:  time.UnixMilli(r.Created).UTC(),
		LastAccess: time.UnixMilli(r.Access).UTC(),
		Attributes: []string{},
		Copies:     []domain.SessionCopy{{Server: n.name, Role: role, Epoch: r.Epoch, Version: r.Version}},
	}
	if timeout > 0 {
		info.ExpiresAt = info.LastAccess.Add(timeout)
	}
	if values {
		info.Values = map[string]any{}
	}
	for k, v := range r.Attrs {
		if session.Reserved(k) {
			continue
		}
		info.Attributes = append(info.Attributes, k)
		if values {
			switch v.Kind {
			case session.KindInt:
				info.Values[k] = v.I
			case session.KindBytes:
				info.Values[k] = []byte(v.S) // JSON: base64
			default:
				info.Values[k] = v.S
			}
		}
	}
	sort.Strings(info.Attributes)
	return info
}
