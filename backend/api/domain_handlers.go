package api

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"tandem/backend/control"
	"tandem/backend/domain"
	"tandem/backend/store"
)

// nameFromPath fixes the resource's name to the path's; a different name
// in the body is refused.
func nameFromPath(c *gin.Context, body *string) error {
	name := c.Param("name")
	if *body != "" && *body != name {
		return domain.Invalid("name", "must match the name in the path (%q); names cannot be changed", name)
	}
	*body = name
	return nil
}

// ---- clusters ----

// ClusterPatch changes some fields of a cluster; nil fields stay.
type ClusterPatch struct {
	Description         *string `json:"description"`
	FailoverMode        *string `json:"failover_mode"`
	BackupPolicy        *string `json:"backup_policy"`
	HeartbeatIntervalMS *int    `json:"heartbeat_interval_ms"`
	HeartbeatTimeoutMS  *int    `json:"heartbeat_timeout_ms"`
	MemberTLS           *bool   `json:"member_tls"`
}

// Patch applies p to cl.
func (p ClusterPatch) Patch(cl *domain.Cluster) {
	setIf(&cl.Description, p.Description)
	setIf(&cl.FailoverMode, p.FailoverMode)
	setIf(&cl.BackupPolicy, p.BackupPolicy)
	setIf(&cl.HeartbeatIntervalMS, p.HeartbeatIntervalMS)
	setIf(&cl.HeartbeatTimeoutMS, p.HeartbeatTimeoutMS)
	setIf(&cl.MemberTLS, p.MemberTLS)
}

// checkCluster refuses what the store cannot judge: member TLS needs the
// domain CA, which an admin server on --plain-http does not run.
func (h *handler) checkCluster(cl *domain.Cluster) error {
	if cl.MemberTLS && h.pki == nil {
		return domain.Invalid("member_tls", "needs the domain CA and node certificates: this admin server runs with --plain-http")
	}
	return nil
}

func setIf[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

func (h *handler) patchCluster(c *gin.Context) error {
	var p ClusterPatch
	if err := h.bind(c, &p); err != nil {
		return err
	}
	var out domain.Cluster
	err := h.st.InTx(c.Request.Context(), func(tx *store.Store) error {
		cl, err := tx.Cluster(c.Request.Context(), c.Param("name"))
		if err != nil {
			return err
		}
		p.Patch(&cl)
		if err := h.checkCluster(&cl); err != nil {
			return err
		}
		out, err = tx.UpdateCluster(c.Request.Context(), actor(c), cl)
		return err
	})
	if err != nil {
		return err
	}
	touched(c, control.Scope{Clusters: []string{out.Name}})
	c.JSON(http.StatusOK, out)
	return nil
}

// SessionConfigView is the answer of the session-config endpoints.
type SessionConfigView struct {
	Override  domain.SessionOverride `json:"override"`
	Effective domain.SessionConfig   `json:"effective"`
	Revision  int64                  `json:"revision,omitempty"`
}

func (h *handler) getClusterSession(c *gin.Context) error {
	o, err := h.st.ClusterSessionDefaults(c.Request.Context(), c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, SessionConfigView{Override: o, Effective: domain.Merge(domain.DefaultSessionConfig(), o)})
	return nil
}

func (h *handler) putClusterSession(c *gin.Context) error {
	var o domain.SessionOverride
	if err := h.bind(c, &o); err != nil {
		return err
	}
	return h.setClusterSession(c, o)
}

func (h *handler) deleteClusterSession(c *gin.Context) error {
	return h.setClusterSession(c, domain.SessionOverride{})
}

func (h *handler) setClusterSession(c *gin.Context, o domain.SessionOverride) error {
	out, err := h.st.SetClusterSessionDefaults(c.Request.Context(), actor(c), c.Param("name"), o)
	if err != nil {
		return err
	}
	touched(c, control.Scope{Clusters: []string{c.Param("name")}})
	c.JSON(http.StatusOK, SessionConfigView{Override: out, Effective: domain.Merge(domain.DefaultSessionConfig(), out)})
	return nil
}

// ---- servers ----

// ServerPatch changes some fields of a server; nil fields stay.
type ServerPatch struct {
	Cluster        *string `json:"cluster"`
	Listen         *string `json:"listen"`
	InternalListen *string `json:"internal_listen"`
	Route          *string `json:"route"`
	NodeManager    *string `json:"node_manager"`
	Backup         *string `json:"backup"`
}

// Patch applies p to s.
func (p ServerPatch) Patch(s *domain.Server) {
	setIf(&s.Cluster, p.Cluster)
	if p.Listen != nil && p.InternalListen == nil && s.InternalListen == domain.NextPort(s.Listen) {
		s.InternalListen = "" // it followed listen: it follows the new one
	}
	setIf(&s.Listen, p.Listen)
	setIf(&s.InternalListen, p.InternalListen)
	setIf(&s.Route, p.Route)
	setIf(&s.NodeManager, p.NodeManager)
	setIf(&s.Backup, p.Backup)
}

func (h *handler) patchServer(c *gin.Context) error {
	var p ServerPatch
	if err := h.bind(c, &p); err != nil {
		return err
	}
	var out domain.Server
	before, err := beforeWrite(c, h.st, (*store.Store).Server, c.Param("name"), func(tx *store.Store, s domain.Server) (err error) {
		p.Patch(&s)
		out, err = tx.UpdateServer(c.Request.Context(), actor(c), s)
		return err
	})
	if err != nil {
		return err
	}
	touched(c, placed(placement{before.Cluster, before.NodeManager}, placement{out.Cluster, out.NodeManager}))
	c.JSON(http.StatusOK, out)
	return nil
}

func (h *handler) getServerSession(c *gin.Context) error {
	o, eff, rev, err := h.st.ServerSessionConfig(c.Request.Context(), c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, SessionConfigView{Override: o, Effective: eff, Revision: rev})
	return nil
}

func (h *handler) putServerSession(c *gin.Context) error {
	var o domain.SessionOverride
	if err := h.bind(c, &o); err != nil {
		return err
	}
	return h.setServerSession(c, o)
}

func (h *handler) deleteServerSession(c *gin.Context) error {
	return h.setServerSession(c, domain.SessionOverride{})
}

func (h *handler) setServerSession(c *gin.Context, o domain.SessionOverride) error {
	var rev domain.Revision
	sv, err := beforeWrite(c, h.st, (*store.Store).Server, c.Param("name"), func(tx *store.Store, sv domain.Server) (err error) {
		rev, err = tx.SetServerSessionOverride(c.Request.Context(), actor(c), sv.Name, o)
		return err
	})
	if err != nil {
		return err
	}
	// The server's own config, and its cluster's web servers (cookie names).
	touched(c, control.Scope{Clusters: []string{sv.Cluster}})
	c.JSON(http.StatusOK, SessionConfigView{Override: rev.Override, Effective: rev.Config, Revision: rev.Number})
	return nil
}

// RevisionView is a revision with the fields that changed from the previous one.
type RevisionView struct {
	domain.Revision
	Changes []Change `json:"changes"`
}

// Change is one field that differs between two revisions.
type Change struct {
	Field string `json:"field"`
	From  any    `json:"from"`
	To    any    `json:"to"`
}

func (h *handler) listRevisions(c *gin.Context) error {
	revs, err := h.st.Revisions(c.Request.Context(), c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, revs)
	return nil
}

func (h *handler) getRevision(c *gin.Context) error {
	n, err := strconv.ParseInt(c.Param("n"), 10, 64)
	if err != nil || n < 1 {
		return badRequest("n", "revision must be a positive number")
	}
	rev, err := h.st.Revision(c.Request.Context(), c.Param("name"), n)
	if err != nil {
		return err
	}
	view := RevisionView{Revision: rev, Changes: []Change{}}
	if n > 1 {
		prev, err := h.st.Revision(c.Request.Context(), c.Param("name"), n-1)
		if err != nil {
			return err
		}
		view.Changes = diff(prev.Config, rev.Config)
	}
	c.JSON(http.StatusOK, view)
	return nil
}

func diff(a, b domain.SessionConfig) []Change {
	out := []Change{}
	add := func(field string, x, y any) {
		if x != y {
			out = append(out, Change{Field: field, From: x, To: y})
		}
	}
	add("shared", a.Shared, b.Shared)
	add("tracking_mode", a.TrackingMode, b.TrackingMode)
	add("cookie.name", a.Cookie.Name, b.Cookie.Name)
	add("cookie.domain", a.Cookie.Domain, b.Cookie.Domain)
	add("cookie.path", a.Cookie.Path, b.Cookie.Path)
	add("cookie.secure", a.Cookie.Secure, b.Cookie.Secure)
	add("cookie.http_only", a.Cookie.HTTPOnly, b.Cookie.HTTPOnly)
	add("cookie.same_site", a.Cookie.SameSite, b.Cookie.SameSite)
	add("cookie.max_age_seconds", a.Cookie.MaxAgeSeconds, b.Cookie.MaxAgeSeconds)
	add("timeout_seconds", a.TimeoutSeconds, b.TimeoutSeconds)
	add("max_sessions", a.MaxSessions, b.MaxSessions)
	add("replication", a.Replication, b.Replication)
	add("failback", a.Failback, b.Failback)
	return out
}

// RollbackRequest asks for a revision to become current again.
type RollbackRequest struct {
	Revision int64 `json:"revision"`
}

func (h *handler) rollback(c *gin.Context) error {
	var in RollbackRequest
	if err := h.bind(c, &in); err != nil {
		return err
	}
	if in.Revision < 1 {
		return domain.Invalid("revision", "must be a revision number (1 or more)")
	}
	var rev domain.Revision
	sv, err := beforeWrite(c, h.st, (*store.Store).Server, c.Param("name"), func(tx *store.Store, sv domain.Server) (err error) {
		rev, err = tx.Rollback(c.Request.Context(), actor(c), sv.Name, in.Revision)
		return err
	})
	if err != nil {
		return err
	}
	touched(c, control.Scope{Clusters: []string{sv.Cluster}})
	c.JSON(http.StatusOK, rev)
	return nil
}

// ---- web servers ----

// ---- node managers ----

// ---- a cluster's application ----

// ClusterApplicationRequest is the body of PUT /clusters/{name}/application.
type ClusterApplicationRequest struct {
	Application *string `json:"application"`
	// Version is an uploaded version of it; absent or "": its command as
	// defined, without an archive.
	Version string `json:"version"`
}

// ClusterApplicationView answers PUT /clusters/{name}/application.
type ClusterApplicationView struct {
	Cluster     string            `json:"cluster"`
	Application string            `json:"application"` // "" = the built-in sample app
	Version     string            `json:"version"`
	Revisions   []domain.Revision `json:"revisions"` // one new revision per server; [] when nothing changed
	// Job is the rolling restart that moves the servers to or from a go
	// application (its binary is the server process); null otherwise.
	Job any `json:"job"`
	// RestartError says why no rolling restart could start (another job
	// runs): start one when it ends.
	RestartError string `json:"restart_error,omitempty"`
}

func (h *handler) setClusterApplication(c *gin.Context) error {
	var in ClusterApplicationRequest
	if err := h.bind(c, &in); err != nil {
		return err
	}
	if in.Application == nil {
		return domain.Invalid("application", "is required: an application's name, or \"\" for the built-in sample app")
	}
	if *in.Application != "" {
		if err := domain.CheckName("application", *in.Application); err != nil {
			return err
		}
	}
	if in.Version != "" {
		if err := domain.CheckVersion("version", in.Version); err != nil {
			return err
		}
	}
	ctx, name := c.Request.Context(), c.Param("name")
	before, after, revs, err := h.st.SetClusterApplication(ctx, actor(c), name, *in.Application, in.Version)
	if err != nil {
		return err
	}
	return h.appliedApplication(c, name, *in.Application, in.Version, before, after, revs)
}

// rollbackApplication deploys what the cluster ran before its current
// application (the deployment history says what), one server at a time.
func (h *handler) rollbackApplication(c *gin.Context) error {
	app, version, err := h.st.RollbackTarget(c.Request.Context(), c.Param("name"))
	if err != nil {
		return err
	}
	return h.startDeploy(c, DeployRequest{Application: app, Version: version, Rollback: true})
}

func (h *handler) listDeployments(c *gin.Context) error {
	ds, err := h.st.Deployments(c.Request.Context(), c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, ds)
	return nil
}

// appliedApplication pushes a cluster's new application and, to or from a
// go one, starts the rolling restart that moves the servers; it answers
// what happened.
func (h *handler) appliedApplication(c *gin.Context, name, app, version string, before, after *domain.Application, revs []domain.Revision) error {
	ctx := c.Request.Context()
	out := ClusterApplicationView{Cluster: name, Application: app, Version: version, Revisions: revs}
	touched(c, control.Scope{})
	if len(revs) == 0 {
		c.JSON(http.StatusOK, out)
		return nil
	}
	// The new configs go out now, before a rolling restart needs them: a
	// node manager starts a go application's binary from its config.
	if h.control != nil {
		h.control.Changed(ctx, control.Everything)
	}
	if isGo(before) || isGo(after) {
		if h.roller == nil {
			out.RestartError = "rolling restarts are not available on this admin server"
		} else if job, err := h.roller.StartRolling(ctx, name, actor(c), RollingOptions{}); err != nil {
			h.log.Warn("api: application set, but no rolling restart started", "cluster", name, "err", err)
			_, d := h.classify(err) // a code and message without internal detail
			out.RestartError = "no rolling restart started (" + d.Message + "); start one with POST /api/v1/clusters/" + name + "/rolling-restart"
		} else {
			out.Job = job
		}
	}
	c.JSON(http.StatusOK, out)
	return nil
}

func isGo(a *domain.Application) bool { return a != nil && a.Kind == domain.AppGo }
