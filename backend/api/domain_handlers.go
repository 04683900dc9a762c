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

func (h *handler) listClusters(c *gin.Context) error {
	cs, err := h.st.Clusters(c.Request.Context())
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, cs)
	return nil
}

func (h *handler) getCluster(c *gin.Context) error {
	cl, err := h.st.Cluster(c.Request.Context(), c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, cl)
	return nil
}

func (h *handler) createCluster(c *gin.Context) error {
	var in domain.Cluster
	if err := h.bind(c, &in); err != nil {
		return err
	}
	out, err := h.st.CreateCluster(c.Request.Context(), actor(c), in)
	if err != nil {
		return err
	}
	touched(c, control.Scope{Clusters: []string{out.Name}})
	c.Header("Location", "/api/v1/clusters/"+out.Name)
	c.JSON(http.StatusCreated, out)
	return nil
}

func (h *handler) putCluster(c *gin.Context) error {
	var in domain.Cluster
	if err := h.bind(c, &in); err != nil {
		return err
	}
	if err := nameFromPath(c, &in.Name); err != nil {
		return err
	}
	out, err := h.st.UpdateCluster(c.Request.Context(), actor(c), in)
	if err != nil {
		return err
	}
	touched(c, control.Scope{Clusters: []string{out.Name}})
	c.JSON(http.StatusOK, out)
	return nil
}

// ClusterPatch changes some fields of a cluster; nil fields stay.
type ClusterPatch struct {
	Description         *string `json:"description"`
	FailoverMode        *string `json:"failover_mode"`
	BackupPolicy        *string `json:"backup_policy"`
	HeartbeatIntervalMS *int    `json:"heartbeat_interval_ms"`
	HeartbeatTimeoutMS  *int    `json:"heartbeat_timeout_ms"`
}

// Patch applies p to cl.
func (p ClusterPatch) Patch(cl *domain.Cluster) {
	setIf(&cl.Description, p.Description)
	setIf(&cl.FailoverMode, p.FailoverMode)
	setIf(&cl.BackupPolicy, p.BackupPolicy)
	setIf(&cl.HeartbeatIntervalMS, p.HeartbeatIntervalMS)
	setIf(&cl.HeartbeatTimeoutMS, p.HeartbeatTimeoutMS)
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

func (h *handler) deleteCluster(c *gin.Context) error {
	if err := h.st.DeleteCluster(c.Request.Context(), actor(c), c.Param("name")); err != nil {
		return err
	}
	touched(c, control.Scope{Clusters: []string{c.Param("name")}})
	c.Status(http.StatusNoContent)
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

func (h *handler) listServers(c *gin.Context) error {
	ss, err := h.st.Servers(c.Request.Context(), c.Query("cluster"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, ss)
	return nil
}

func (h *handler) getServer(c *gin.Context) error {
	s, err := h.st.Server(c.Request.Context(), c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, s)
	return nil
}

func (h *handler) createServer(c *gin.Context) error {
	var in domain.Server
	if err := h.bind(c, &in); err != nil {
		return err
	}
	out, err := h.st.CreateServer(c.Request.Context(), actor(c), in)
	if err != nil {
		return err
	}
	touched(c, placed(placement{out.Cluster, out.NodeManager}))
	c.Header("Location", "/api/v1/servers/"+out.Name)
	c.JSON(http.StatusCreated, out)
	return nil
}

func (h *handler) putServer(c *gin.Context) error {
	var in domain.Server
	if err := h.bind(c, &in); err != nil {
		return err
	}
	if err := nameFromPath(c, &in.Name); err != nil {
		return err
	}
	var out domain.Server
	before, err := beforeWrite(c, h.st, (*store.Store).Server, in.Name, func(tx *store.Store, _ domain.Server) (err error) {
		out, err = tx.UpdateServer(c.Request.Context(), actor(c), in)
		return err
	})
	if err != nil {
		return err
	}
	touched(c, placed(placement{before.Cluster, before.NodeManager}, placement{out.Cluster, out.NodeManager}))
	c.JSON(http.StatusOK, out)
	return nil
}

// ServerPatch changes some fields of a server; nil fields stay.
type ServerPatch struct {
	Cluster     *string `json:"cluster"`
	Listen      *string `json:"listen"`
	Route       *string `json:"route"`
	NodeManager *string `json:"node_manager"`
	Backup      *string `json:"backup"`
}

// Patch applies p to s.
func (p ServerPatch) Patch(s *domain.Server) {
	setIf(&s.Cluster, p.Cluster)
	setIf(&s.Listen, p.Listen)
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

func (h *handler) deleteServer(c *gin.Context) error {
	before, err := beforeWrite(c, h.st, (*store.Store).Server, c.Param("name"), func(tx *store.Store, sv domain.Server) error {
		return tx.DeleteServer(c.Request.Context(), actor(c), sv.Name)
	})
	if err != nil {
		return err
	}
	touched(c, placed(placement{before.Cluster, before.NodeManager}))
	c.Status(http.StatusNoContent)
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

func (h *handler) listWebServers(c *gin.Context) error {
	ws, err := h.st.WebServers(c.Request.Context(), c.Query("cluster"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, ws)
	return nil
}

func (h *handler) getWebServer(c *gin.Context) error {
	w, err := h.st.WebServer(c.Request.Context(), c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, w)
	return nil
}

func (h *handler) createWebServer(c *gin.Context) error {
	var in domain.WebServer
	if err := h.bind(c, &in); err != nil {
		return err
	}
	out, err := h.st.CreateWebServer(c.Request.Context(), actor(c), in)
	if err != nil {
		return err
	}
	touched(c, placed(placement{out.Cluster, out.NodeManager}))
	c.Header("Location", "/api/v1/webservers/"+out.Name)
	c.JSON(http.StatusCreated, out)
	return nil
}

func (h *handler) putWebServer(c *gin.Context) error {
	var in domain.WebServer
	if err := h.bind(c, &in); err != nil {
		return err
	}
	if err := nameFromPath(c, &in.Name); err != nil {
		return err
	}
	var out domain.WebServer
	before, err := beforeWrite(c, h.st, (*store.Store).WebServer, in.Name, func(tx *store.Store, _ domain.WebServer) (err error) {
		out, err = tx.UpdateWebServer(c.Request.Context(), actor(c), in)
		return err
	})
	if err != nil {
		return err
	}
	touched(c, placed(placement{before.Cluster, before.NodeManager}, placement{out.Cluster, out.NodeManager}))
	c.JSON(http.StatusOK, out)
	return nil
}

func (h *handler) deleteWebServer(c *gin.Context) error {
	before, err := beforeWrite(c, h.st, (*store.Store).WebServer, c.Param("name"), func(tx *store.Store, w domain.WebServer) error {
		return tx.DeleteWebServer(c.Request.Context(), actor(c), w.Name)
	})
	if err != nil {
		return err
	}
	touched(c, placed(placement{before.Cluster, before.NodeManager}))
	c.Status(http.StatusNoContent)
	return nil
}

// ---- node managers ----

func (h *handler) listNodeManagers(c *gin.Context) error {
	ns, err := h.st.NodeManagers(c.Request.Context())
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, ns)
	return nil
}

func (h *handler) getNodeManager(c *gin.Context) error {
	n, err := h.st.NodeManager(c.Request.Context(), c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, n)
	return nil
}

func (h *handler) createNodeManager(c *gin.Context) error {
	var in domain.NodeManager
	if err := h.bind(c, &in); err != nil {
		return err
	}
	out, err := h.st.CreateNodeManager(c.Request.Context(), actor(c), in)
	if err != nil {
		return err
	}
	touched(c, control.Scope{NodeManagers: []string{out.Name}})
	c.Header("Location", "/api/v1/node-managers/"+out.Name)
	c.JSON(http.StatusCreated, out)
	return nil
}

func (h *handler) putNodeManager(c *gin.Context) error {
	var in domain.NodeManager
	if err := h.bind(c, &in); err != nil {
		return err
	}
	if err := nameFromPath(c, &in.Name); err != nil {
		return err
	}
	out, err := h.st.UpdateNodeManager(c.Request.Context(), actor(c), in)
	if err != nil {
		return err
	}
	touched(c, control.Scope{NodeManagers: []string{out.Name}})
	c.JSON(http.StatusOK, out)
	return nil
}

func (h *handler) deleteNodeManager(c *gin.Context) error {
	if err := h.st.DeleteNodeManager(c.Request.Context(), actor(c), c.Param("name")); err != nil {
		return err
	}
	touched(c, control.Scope{NodeManagers: []string{c.Param("name")}})
	c.Status(http.StatusNoContent)
	return nil
}
