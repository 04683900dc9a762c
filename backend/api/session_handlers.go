package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"tandem/backend/auth"
	"tandem/backend/domain"
	"tandem/backend/route"
	"tandem/backend/session"
	"tandem/backend/wire"
)

// SessionView is the session inspector's answer: the session as its
// freshest holder reports it, and the events that moved it.
type SessionView struct {
	domain.SessionInfo
	History []domain.Event `json:"history"`
}

// errNoSuchSession never echoes the id asked for: it may be a user's
// live session id.
var errNoSuchSession = fmt.Errorf("no running server holds that session: %w", domain.ErrNotFound)

// historyTypes are the events that move a session between servers.
var historyTypes = []string{domain.EventFailover, domain.EventFailback, domain.EventBackupChanged,
	domain.EventSessionLost, domain.EventServerDown, domain.EventServerSuspect}

// getSession finds a session by id (or a whole cookie value, routes and
// all) by asking every connected managed server over the control channel:
// the holder with the newest (epoch, version) says who owns it.
func (h *handler) getSession(c *gin.Context) error {
	v, err := route.Parse(c.Param("id"))
	if err != nil {
		return errNoSuchSession
	}
	values := c.Query("values") == "1"
	if values {
		id, _ := auth.IdentityFrom(c)
		if id.Role != domain.RoleAdmin {
			return &forbiddenError{msg: "attribute values need the admin role"}
		}
	}
	if h.control == nil {
		return unavailable("control channel")
	}
	ctx := c.Request.Context()
	servers, err := h.st.Servers(ctx, "")
	if err != nil {
		return err
	}
	cluster := map[string]string{}
	names := make([]string, 0, len(servers))
	for _, s := range servers {
		cluster[s.Name] = s.Cluster
		names = append(names, s.Name)
	}
	answers := h.askServers(ctx, names, wire.Query{Kind: wire.QuerySession, Session: v.ID, Values: values})
	var best *domain.SessionInfo
	var copies []domain.SessionCopy
	for _, name := range names {
		for _, s := range answers[name].Sessions {
			copies = append(copies, s.Copies...)
			if best == nil || session.Newer(s.Epoch, s.Version, best.Epoch, best.Version) ||
				(s.Epoch == best.Epoch && s.Version == best.Version && s.Owner == name) {
				s := s
				best = &s
			}
		}
	}
	if best == nil {
		return errNoSuchSession
	}
	best.Cluster = cluster[best.Owner]
	if best.Cluster == "" {
		best.Cluster = cluster[best.Copies[0].Server]
	}
	best.Copies = copies
	if values {
		if err := h.st.RecordAudit(ctx, actor(c), "session.read_values", "session/"+best.ID[:8]+"…", map[string]any{"cluster": best.Cluster, "owner": best.Owner}); err != nil {
			return err
		}
	}
	hist, err := h.sessionHistory(ctx, best)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, SessionView{SessionInfo: *best, History: hist})
	return nil
}

// sessionHistory lists the events since the session was created that
// moved sessions of the servers it has lived on (its home, owner and
// backup), oldest first.
func (h *handler) sessionHistory(ctx context.Context, s *domain.SessionInfo) ([]domain.Event, error) {
	es, err := h.st.Events(ctx, domain.EventFilter{Types: historyTypes, Cluster: s.Cluster, Limit: 500})
	if err != nil {
		return nil, err
	}
	on := map[string]bool{s.Home: true, s.Owner: true, s.Backup: true}
	delete(on, "")
	out := []domain.Event{}
	for _, e := range es {
		if e.Time.Before(s.CreatedAt.Add(-time.Second)) || !(on[e.Server] || on[e.Peer]) {
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

// ServerSessions is one page of the sessions a server owns.
type ServerSessions struct {
	Server   string               `json:"server"`
	Total    int                  `json:"total"`
	Offset   int                  `json:"offset"`
	Sessions []domain.SessionInfo `json:"sessions"`
}

func (h *handler) listServerSessions(c *gin.Context) error {
	ctx := c.Request.Context()
	s, err := h.st.Server(ctx, c.Param("name"))
	if err != nil {
		return err
	}
	offset, err := queryInt(c, "offset", 0, 0, 1<<31)
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", 50, 1, wire.MaxQueryLimit)
	if err != nil {
		return err
	}
	if h.control == nil {
		return unavailable("control channel")
	}
	res, err := h.control.Query(ctx, s.Name, wire.Query{Kind: wire.QuerySessions, Offset: int(offset), Limit: int(limit)})
	if err != nil {
		if errors.Is(err, domain.ErrUnavailable) {
			return unavailable("server " + s.Name)
		}
		return err
	}
	out := ServerSessions{Server: s.Name, Total: res.Total, Offset: int(offset), Sessions: res.Sessions}
	if out.Sessions == nil {
		out.Sessions = []domain.SessionInfo{}
	}
	for i := range out.Sessions {
		out.Sessions[i].Cluster = s.Cluster
	}
	c.JSON(http.StatusOK, out)
	return nil
}

// askServers sends q to each named server that is connected, at once, and
// returns the answers by name; servers that are down or do not answer in
// time are left out (the inspector shows what the living hold).
func (h *handler) askServers(ctx context.Context, names []string, q wire.Query) map[string]wire.QueryResult {
	out := make(map[string]wire.QueryResult, len(names))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := h.control.Query(ctx, name, q)
			if err != nil || !res.OK {
				return
			}
			mu.Lock()
			out[name] = res
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}
