package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"tandem/backend/control"
	"tandem/backend/domain"
	"tandem/backend/haproxy"
	"tandem/backend/rolling"
	"tandem/backend/store"
	"tandem/backend/wire"
)

// ---- push, commands, rolling restarts ----

// PushResponse is the outcome of a push, per node.
type PushResponse struct {
	Cluster string              `json:"cluster"`
	Results []domain.PushResult `json:"results"`
}

func (h *handler) push(c *gin.Context) error {
	name := c.Param("name")
	if _, err := h.st.Cluster(c.Request.Context(), name); err != nil {
		return err
	}
	if h.control == nil {
		return unavailable("control channel")
	}
	res, err := h.control.Push(c.Request.Context(), name, actor(c))
	if err != nil {
		return err
	}
	// The push delivered the configs itself: a node that missed it gets
	// its config when it reconnects. Nothing to re-check.
	touched(c, control.Scope{})
	if res == nil {
		res = []domain.PushResult{}
	}
	c.JSON(http.StatusOK, PushResponse{Cluster: name, Results: res})
	return nil
}

func (h *handler) command(action string) func(c *gin.Context) error {
	return h.commandTo("server", action, func(ctx context.Context, name string) (string, error) {
		s, err := h.st.Server(ctx, name)
		return s.NodeManager, err
	})
}

// webServerCommand starts, stops or restarts a web server through its node manager.
func (h *handler) webServerCommand(action string) func(c *gin.Context) error {
	return h.commandTo("web server", action, func(ctx context.Context, name string) (string, error) {
		w, err := h.st.WebServer(ctx, name)
		return w.NodeManager, err
	})
}

// commandTo sends action for the named process to the node manager that
// nodeManagerOf names.
func (h *handler) commandTo(kind, action string, nodeManagerOf func(ctx context.Context, name string) (string, error)) func(c *gin.Context) error {
	return func(c *gin.Context) error {
		name := c.Param("name")
		nm, err := nodeManagerOf(c.Request.Context(), name)
		if err != nil {
			return err
		}
		if nm == "" {
			return domain.Conflict("node_manager", "%s %q has no node manager to %s it", kind, name, action)
		}
		if h.control == nil {
			return unavailable("control channel")
		}
		cmd := wire.Command{ID: newRequestID(), Action: action, Target: name}
		res, err := h.control.Command(c.Request.Context(), nm, cmd)
		if err != nil {
			return err
		}
		touched(c, control.Scope{}) // a process started anew gets its config when it connects
		if !res.OK {
			return &commandError{msg: res.Error}
		}
		c.JSON(http.StatusOK, res)
		return nil
	}
}

// haproxyConfig renders an equivalent HAProxy configuration of the cluster
// (cookie-route stickiness, backup fallback, health checks) for operators
// who keep their own load balancer. The frontend listens on ?listen=, else
// on the cluster's first web server's address, else on 0.0.0.0:8080.
func (h *handler) haproxyConfig(c *gin.Context) error {
	ctx := c.Request.Context()
	name := c.Param("name")
	rt, err := h.st.RoutingTable(ctx, name)
	if err != nil {
		return err
	}
	listen := c.Query("listen")
	if listen != "" {
		if err := domain.CheckListen("listen", listen); err != nil {
			return err
		}
	} else {
		webs, err := h.st.WebServers(ctx, name)
		if err != nil {
			return err
		}
		listen = "0.0.0.0:8080"
		if len(webs) > 0 {
			listen = webs[0].Listen
		}
	}
	if len(rt.Members) == 0 {
		return domain.Conflict("cluster", "cluster %q has no servers to balance", name)
	}
	cfg, err := haproxy.Render(listen, rt.Cluster, rt.CookieNames, rt.Members)
	if err != nil {
		return fmt.Errorf("api: render haproxy config: %w", err)
	}
	c.Header("Content-Disposition", `inline; filename="haproxy.cfg"`)
	c.Data(http.StatusOK, "text/plain; charset=utf-8", []byte(cfg))
	return nil
}

// RollingRequest starts a rolling restart; the body is optional.
type RollingRequest struct {
	Order              []string `json:"order"`
	StepTimeoutSeconds int      `json:"step_timeout_seconds"`
}

func (h *handler) rollingRestart(c *gin.Context) error {
	name := c.Param("name")
	var in RollingRequest
	if c.Request.ContentLength != 0 {
		if err := h.bind(c, &in); err != nil {
			return err
		}
	}
	if in.StepTimeoutSeconds < 0 || in.StepTimeoutSeconds > 3600 {
		return domain.Invalid("step_timeout_seconds", "must be from 0 (default) to 3600")
	}
	for i, s := range in.Order {
		if err := domain.CheckName(fmt.Sprintf("order[%d]", i), s); err != nil {
			return err
		}
	}
	if _, err := h.st.Cluster(c.Request.Context(), name); err != nil {
		return err
	}
	if h.roller == nil {
		return unavailable("rolling restarts")
	}
	job, err := h.roller.StartRolling(c.Request.Context(), name, actor(c), RollingOptions{Order: in.Order, StepTimeout: time.Duration(in.StepTimeoutSeconds) * time.Second})
	if err != nil {
		return err
	}
	touched(c, control.Scope{}) // a job, no desired config changed
	c.JSON(http.StatusAccepted, job)
	return nil
}

func (h *handler) getJob(c *gin.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id < 1 {
		return domain.NotFound("job", c.Param("id"))
	}
	if h.roller == nil {
		return unavailable("rolling restarts")
	}
	job, err := h.roller.Job(c.Request.Context(), id)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, job)
	return nil
}

// listJobs answers GET /jobs: rolling restarts and deploys, newest first,
// paged by before and limit (default 50). Jobs are read from their table,
// so the list answers even without a Roller (finished jobs stay there).
func (h *handler) listJobs(c *gin.Context) error {
	before, err := queryInt(c, "before", 0, 0, 1<<62)
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", 50, 1, rolling.MaxJobsPage)
	if err != nil {
		return err
	}
	jobs, err := rolling.ListJobs(c.Request.Context(), h.st.SQL(), before, int(limit))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, jobs)
	return nil
}

// ---- topology ----

// Topology types are shared with the domain package.
type (
	Topology        = domain.Topology
	TopologyCluster = domain.TopologyCluster
	TopologyServer  = domain.TopologyServer
	TopologyNode    = domain.TopologyNode
)

func (h *handler) live(name string) domain.LiveState {
	if h.control != nil {
		if l, ok := h.control.Live(name); ok {
			if l.State == "" {
				l.State = domain.StateStopped
			}
			return l
		}
	}
	return domain.LiveState{State: domain.StateStopped}
}

func (h *handler) topology(c *gin.Context) error {
	t, err := h.buildTopology(c.Request.Context())
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, t)
	return nil
}

func (h *handler) buildTopology(ctx context.Context) (Topology, error) {
	clusters, err := h.st.Clusters(ctx)
	if err != nil {
		return Topology{}, err
	}
	servers, err := h.st.Servers(ctx, "")
	if err != nil {
		return Topology{}, err
	}
	webs, err := h.st.WebServers(ctx, "")
	if err != nil {
		return Topology{}, err
	}
	nms, err := h.st.NodeManagers(ctx)
	if err != nil {
		return Topology{}, err
	}
	revs, err := h.st.LatestRevisions(ctx)
	if err != nil {
		return Topology{}, err
	}
	pins, err := h.st.ServerPins(ctx)
	if err != nil {
		return Topology{}, err
	}
	t := Topology{Clusters: make([]TopologyCluster, 0, len(clusters)), NodeManagers: make([]TopologyNode, 0, len(nms))}
	hostOf := map[string]string{} // node manager -> its machine's name
	for _, n := range nms {
		if hi := h.live(n.Name).Host; hi != nil {
			hostOf[n.Name] = hi.Name
		}
	}
	index := map[string]int{}
	for i, cl := range clusters {
		index[cl.Name] = i
		t.Clusters = append(t.Clusters, TopologyCluster{Cluster: cl, Servers: []TopologyServer{}, WebServers: []TopologyNode{}})
	}
	for _, s := range servers {
		l := h.live(s.Name)
		backup := l.Backup
		if backup == "" {
			backup = s.Backup
		}
		ts := TopologyServer{Name: s.Name, Cluster: s.Cluster, State: l.State, PID: l.PID, Listen: s.Listen, Route: s.Route,
			NodeManager: s.NodeManager, Backup: backup, ConfiguredBackup: s.Backup, Sessions: l.Sessions,
			BackupSessions: l.BackupSessions, Unprotected: l.Unprotected, DesiredRevision: revs[s.Name],
			AppliedRevision: l.AppliedRevision, App: l.App, LastSeen: l.LastSeen, Host: hostOf[s.NodeManager]}
		if i, ok := index[s.Cluster]; ok {
			ts.Application, ts.AppVersion = t.Clusters[i].Application, t.Clusters[i].AppVersion
			if pin, ok := pins[s.Name]; ok { // a deploy moved it ahead of (or back from) its cluster
				ts.Application, ts.AppVersion = pin[0], pin[1]
			}
			t.Clusters[i].Servers = append(t.Clusters[i].Servers, ts)
		}
	}
	for _, w := range webs {
		l := h.live(w.Name)
		tn := TopologyNode{Name: w.Name, Cluster: w.Cluster, Listen: w.Listen, NodeManager: w.NodeManager, State: l.State, PID: l.PID, LastSeen: l.LastSeen, Host: hostOf[w.NodeManager]}
		if i, ok := index[w.Cluster]; ok {
			t.Clusters[i].WebServers = append(t.Clusters[i].WebServers, tn)
		}
	}
	for _, n := range nms {
		l := h.live(n.Name)
		tn := TopologyNode{Name: n.Name, Listen: n.Listen, State: l.State, PID: l.PID, LastSeen: l.LastSeen, HostInfo: l.Host}
		if l.Host != nil {
			tn.Host = l.Host.Name
		}
		t.NodeManagers = append(t.NodeManagers, tn)
	}
	return t, nil
}

// ---- events and audit ----

// MaxEventsPage bounds one page of GET /events and /audit.
const MaxEventsPage = 1000

func queryInt(c *gin.Context, name string, def, minV, maxV int64) (int64, error) {
	v := c.Query(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < minV || n > maxV {
		return 0, badRequest(name, name+" must be a number from "+strconv.FormatInt(minV, 10)+" to "+strconv.FormatInt(maxV, 10))
	}
	return n, nil
}

// eventFilter reads type (repeatable or comma-separated), cluster, server.
func eventFilter(c *gin.Context) domain.EventFilter {
	var f domain.EventFilter
	for _, t := range c.QueryArray("type") {
		for _, p := range strings.Split(t, ",") {
			if p = strings.TrimSpace(p); p != "" {
				f.Types = append(f.Types, p)
			}
		}
	}
	f.Cluster, f.Server = c.Query("cluster"), c.Query("server")
	return f
}

func (h *handler) listEvents(c *gin.Context) error {
	f := eventFilter(c)
	var err error
	if f.BeforeID, err = queryInt(c, "before", 0, 0, 1<<62); err != nil {
		return err
	}
	if f.AfterID, err = queryInt(c, "after", 0, 0, 1<<62); err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", 100, 1, MaxEventsPage)
	if err != nil {
		return err
	}
	f.Limit = int(limit)
	es, err := h.st.Events(c.Request.Context(), f)
	if err != nil {
		return err
	}
	if es == nil {
		es = []domain.Event{}
	}
	c.JSON(http.StatusOK, es)
	return nil
}

func (h *handler) streamEvents(c *gin.Context) error {
	since, err := queryInt(c, "since", 0, 0, 1<<62)
	if err != nil {
		return err
	}
	if h.events == nil {
		return unavailable("event stream")
	}
	h.events.ServeStream(c.Writer, c.Request, eventFilter(c), since)
	return nil
}

// maxAuditFilter bounds the actor and resource filters of GET /audit.
const maxAuditFilter = 200

// auditText reads a text filter of GET /audit: printable, bounded.
func auditText(c *gin.Context, name string) (string, error) {
	v := c.Query(name)
	if len(v) > maxAuditFilter {
		return "", badRequest(name, name+" must be at most "+strconv.Itoa(maxAuditFilter)+" bytes")
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return "", badRequest(name, name+" must be printable text")
		}
	}
	return v, nil
}

// auditTime reads an RFC 3339 time filter of GET /audit (zero if absent).
func auditTime(c *gin.Context, name string) (time.Time, error) {
	v := c.Query(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, badRequest(name, name+" must be an RFC 3339 time, such as 2026-01-02T15:04:05Z")
	}
	return t, nil
}

// listAudit answers GET /audit: newest first, filtered by actor (exact),
// resource (a prefix of the target, such as "token/"), since and until
// (RFC 3339, inclusive), paged by before and limit.
func (h *handler) listAudit(c *gin.Context) error {
	var f store.AuditFilter
	var err error
	if f.BeforeID, err = queryInt(c, "before", 0, 0, 1<<62); err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", 100, 1, MaxEventsPage)
	if err != nil {
		return err
	}
	f.Limit = int(limit)
	if f.Actor, err = auditText(c, "actor"); err != nil {
		return err
	}
	if f.Resource, err = auditText(c, "resource"); err != nil {
		return err
	}
	if f.Since, err = auditTime(c, "since"); err != nil {
		return err
	}
	if f.Until, err = auditTime(c, "until"); err != nil {
		return err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return badRequest("until", "until must not be before since")
	}
	as, err := h.st.AuditFiltered(c.Request.Context(), f)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, as)
	return nil
}

// ---- nodes ----

func (h *handler) nodeConnect(c *gin.Context) error {
	name, err := h.auth.CheckNode(c.Request)
	if err != nil {
		return err
	}
	if h.control == nil {
		return unavailable("control channel")
	}
	r := c.Request
	if name != "" {
		r = r.WithContext(control.WithCertName(r.Context(), name))
	}
	h.control.ServeNode(c.Writer, r)
	return nil
}
