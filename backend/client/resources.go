package client

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"tandem/backend/domain"
)

// fetch GETs path into a T.
func fetch[T any](ctx context.Context, c *Client, path string) (T, error) {
	var out T
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// send sends in (nil: no body) with method to path and decodes the answer into a T.
func send[T any](ctx context.Context, c *Client, method, path string, in any) (T, error) {
	var out T
	return out, c.do(ctx, method, path, in, &out)
}

// ---- clusters ----

// Clusters lists every cluster.
func (c *Client) Clusters(ctx context.Context) ([]domain.Cluster, error) {
	return fetch[[]domain.Cluster](ctx, c, "/api/v1/clusters")
}

// Cluster gets one cluster.
func (c *Client) Cluster(ctx context.Context, name string) (domain.Cluster, error) {
	return fetch[domain.Cluster](ctx, c, "/api/v1/clusters/"+esc(name))
}

// CreateCluster creates a cluster (zero fields take the defaults).
func (c *Client) CreateCluster(ctx context.Context, cl domain.Cluster) (domain.Cluster, error) {
	return send[domain.Cluster](ctx, c, http.MethodPost, "/api/v1/clusters", cl)
}

// UpdateCluster replaces the cluster named cl.Name.
func (c *Client) UpdateCluster(ctx context.Context, cl domain.Cluster) (domain.Cluster, error) {
	return send[domain.Cluster](ctx, c, http.MethodPut, "/api/v1/clusters/"+esc(cl.Name), cl)
}

// ClusterApplicationView answers SetClusterApplication.
type ClusterApplicationView struct {
	Cluster      string            `json:"cluster"`
	Application  string            `json:"application"`
	Version      string            `json:"version"`
	Revisions    []domain.Revision `json:"revisions"`
	Job          *Job              `json:"job"` // the rolling restart to or from a go application
	RestartError string            `json:"restart_error,omitempty"`
}

// SetClusterApplication makes app the cluster's application ("" = the
// built-in sample app): a new revision for every server, pushed.
func (c *Client) SetClusterApplication(ctx context.Context, cluster, app string) (ClusterApplicationView, error) {
	return c.SetClusterApplicationVersion(ctx, cluster, app, "")
}

// SetClusterApplicationVersion makes an uploaded version of app the
// cluster's application ("" version: its command as defined).
func (c *Client) SetClusterApplicationVersion(ctx context.Context, cluster, app, version string) (ClusterApplicationView, error) {
	return send[ClusterApplicationView](ctx, c, http.MethodPut, "/api/v1/clusters/"+esc(cluster)+"/application", map[string]string{"application": app, "version": version})
}

// Deploy starts a deploy job: one server at a time to app@version.
func (c *Client) Deploy(ctx context.Context, cluster, app, version string, stepTimeoutSeconds int) (Job, error) {
	return send[Job](ctx, c, http.MethodPost, "/api/v1/clusters/"+esc(cluster)+"/deploy",
		map[string]any{"application": app, "version": version, "step_timeout_seconds": stepTimeoutSeconds})
}

// RollbackApplication deploys what the cluster ran before its current application.
func (c *Client) RollbackApplication(ctx context.Context, cluster string) (Job, error) {
	return send[Job](ctx, c, http.MethodPost, "/api/v1/clusters/"+esc(cluster)+"/rollback", nil)
}

// Deployments lists the cluster's application changes, newest first.
func (c *Client) Deployments(ctx context.Context, cluster string) ([]domain.Deployment, error) {
	return fetch[[]domain.Deployment](ctx, c, "/api/v1/clusters/"+esc(cluster)+"/deployments")
}

// UploadVersion uploads a version of an application: body is the .tar.gz archive.
func (c *Client) UploadVersion(ctx context.Context, app, version string, body io.Reader) (domain.AppVersion, error) {
	var out domain.AppVersion
	return out, c.doRaw(ctx, http.MethodPut, "/api/v1/applications/"+esc(app)+"/versions/"+esc(version), "application/gzip", body, &out)
}

// DeleteVersion deletes an uploaded version no cluster runs.
func (c *Client) DeleteVersion(ctx context.Context, app, version string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/applications/"+esc(app)+"/versions/"+esc(version), nil, nil)
}

// Versions lists an application's uploaded versions, newest first.
func (c *Client) Versions(ctx context.Context, app string) ([]domain.AppVersion, error) {
	return fetch[[]domain.AppVersion](ctx, c, "/api/v1/applications/"+esc(app)+"/versions")
}

// ---- applications ----

// Applications lists the applications.
func (c *Client) Applications(ctx context.Context) ([]domain.Application, error) {
	return fetch[[]domain.Application](ctx, c, "/api/v1/applications")
}

// Application gets one application.
func (c *Client) Application(ctx context.Context, name string) (domain.Application, error) {
	return fetch[domain.Application](ctx, c, "/api/v1/applications/"+esc(name))
}

// CreateApplication defines an application (zero fields take the defaults).
func (c *Client) CreateApplication(ctx context.Context, a domain.Application) (domain.Application, error) {
	return send[domain.Application](ctx, c, http.MethodPost, "/api/v1/applications", a)
}

// PutApplication replaces the application named a.Name.
func (c *Client) PutApplication(ctx context.Context, a domain.Application) (domain.Application, error) {
	return send[domain.Application](ctx, c, http.MethodPut, "/api/v1/applications/"+esc(a.Name), a)
}

// DeleteApplication deletes an application no cluster runs.
func (c *Client) DeleteApplication(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/applications/"+esc(name), nil, nil)
}

// ClusterPatch changes some fields of a cluster; nil fields stay.
type ClusterPatch struct {
	Description         *string `json:"description,omitempty"`
	FailoverMode        *string `json:"failover_mode,omitempty"`
	BackupPolicy        *string `json:"backup_policy,omitempty"`
	HeartbeatIntervalMS *int    `json:"heartbeat_interval_ms,omitempty"`
	HeartbeatTimeoutMS  *int    `json:"heartbeat_timeout_ms,omitempty"`
}

// PatchCluster changes some fields of a cluster.
func (c *Client) PatchCluster(ctx context.Context, name string, p ClusterPatch) (domain.Cluster, error) {
	return send[domain.Cluster](ctx, c, http.MethodPatch, "/api/v1/clusters/"+esc(name), p)
}

// DeleteCluster deletes a cluster without servers.
func (c *Client) DeleteCluster(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/clusters/"+esc(name), nil, nil)
}

// SessionConfigView is a session config as the API shows it.
type SessionConfigView struct {
	Override  domain.SessionOverride `json:"override"`
	Effective domain.SessionConfig   `json:"effective"`
	Revision  int64                  `json:"revision"`
}

// ClusterSessionConfig gets the cluster's session defaults.
func (c *Client) ClusterSessionConfig(ctx context.Context, name string) (SessionConfigView, error) {
	return fetch[SessionConfigView](ctx, c, "/api/v1/clusters/"+esc(name)+"/session-config")
}

// SetClusterSessionConfig sets the cluster's session defaults (nil fields inherit).
func (c *Client) SetClusterSessionConfig(ctx context.Context, name string, o domain.SessionOverride) (SessionConfigView, error) {
	return send[SessionConfigView](ctx, c, http.MethodPut, "/api/v1/clusters/"+esc(name)+"/session-config", o)
}

// ClearClusterSessionConfig clears the cluster's session defaults.
func (c *Client) ClearClusterSessionConfig(ctx context.Context, name string) (SessionConfigView, error) {
	return send[SessionConfigView](ctx, c, http.MethodDelete, "/api/v1/clusters/"+esc(name)+"/session-config", nil)
}

// ---- servers ----

// Servers lists managed servers; cluster != "" filters.
func (c *Client) Servers(ctx context.Context, cluster string) ([]domain.Server, error) {
	var out []domain.Server
	p := "/api/v1/servers"
	if cluster != "" {
		p += "?cluster=" + url.QueryEscape(cluster)
	}
	return out, c.do(ctx, http.MethodGet, p, nil, &out)
}

// Server gets one managed server.
func (c *Client) Server(ctx context.Context, name string) (domain.Server, error) {
	return fetch[domain.Server](ctx, c, "/api/v1/servers/"+esc(name))
}

// CreateServer creates a managed server.
func (c *Client) CreateServer(ctx context.Context, s domain.Server) (domain.Server, error) {
	return send[domain.Server](ctx, c, http.MethodPost, "/api/v1/servers", s)
}

// UpdateServer replaces the server named s.Name.
func (c *Client) UpdateServer(ctx context.Context, s domain.Server) (domain.Server, error) {
	return send[domain.Server](ctx, c, http.MethodPut, "/api/v1/servers/"+esc(s.Name), s)
}

// ServerPatch changes some fields of a server; nil fields stay.
type ServerPatch struct {
	Cluster        *string `json:"cluster,omitempty"`
	Listen         *string `json:"listen,omitempty"`
	InternalListen *string `json:"internal_listen,omitempty"`
	Route          *string `json:"route,omitempty"`
	NodeManager    *string `json:"node_manager,omitempty"`
	Backup         *string `json:"backup,omitempty"`
}

// PatchServer changes some fields of a server.
func (c *Client) PatchServer(ctx context.Context, name string, p ServerPatch) (domain.Server, error) {
	return send[domain.Server](ctx, c, http.MethodPatch, "/api/v1/servers/"+esc(name), p)
}

// DeleteServer deletes a managed server.
func (c *Client) DeleteServer(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/servers/"+esc(name), nil, nil)
}

// ServerSessionConfig gets a server's override, effective config and revision.
func (c *Client) ServerSessionConfig(ctx context.Context, name string) (SessionConfigView, error) {
	return fetch[SessionConfigView](ctx, c, "/api/v1/servers/"+esc(name)+"/session-config")
}

// SetServerSessionConfig sets a server's override (nil fields inherit).
func (c *Client) SetServerSessionConfig(ctx context.Context, name string, o domain.SessionOverride) (SessionConfigView, error) {
	return send[SessionConfigView](ctx, c, http.MethodPut, "/api/v1/servers/"+esc(name)+"/session-config", o)
}

// ClearServerSessionConfig clears a server's override.
func (c *Client) ClearServerSessionConfig(ctx context.Context, name string) (SessionConfigView, error) {
	return send[SessionConfigView](ctx, c, http.MethodDelete, "/api/v1/servers/"+esc(name)+"/session-config", nil)
}

// Revisions lists a server's config revisions, newest first.
func (c *Client) Revisions(ctx context.Context, server string) ([]domain.Revision, error) {
	return fetch[[]domain.Revision](ctx, c, "/api/v1/servers/"+esc(server)+"/config/revisions")
}

// Change is one field that differs from the previous revision.
type Change struct {
	Field string `json:"field"`
	From  any    `json:"from"`
	To    any    `json:"to"`
}

// RevisionView is a revision with its changes from the previous one.
type RevisionView struct {
	domain.Revision
	Changes []Change `json:"changes"`
}

// Revision gets revision n of a server.
func (c *Client) Revision(ctx context.Context, server string, n int64) (RevisionView, error) {
	return fetch[RevisionView](ctx, c, "/api/v1/servers/"+esc(server)+"/config/revisions/"+strconv.FormatInt(n, 10))
}

// Rollback makes revision n current again, as a new revision.
func (c *Client) Rollback(ctx context.Context, server string, n int64) (domain.Revision, error) {
	return send[domain.Revision](ctx, c, http.MethodPost, "/api/v1/servers/"+esc(server)+"/config/rollback", map[string]int64{"revision": n})
}

// ---- operations ----

// PushResponse is a push's per-node outcome.
type PushResponse struct {
	Cluster string              `json:"cluster"`
	Results []domain.PushResult `json:"results"`
}

// Push sends every node of the cluster its desired config and waits for acks.
func (c *Client) Push(ctx context.Context, cluster string) (PushResponse, error) {
	return send[PushResponse](ctx, c, http.MethodPost, "/api/v1/clusters/"+esc(cluster)+"/push", nil)
}

// CommandResult is a node manager's answer to start/stop/restart.
type CommandResult struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	PID   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

func (c *Client) command(ctx context.Context, server, action string) (CommandResult, error) {
	return send[CommandResult](ctx, c, http.MethodPost, "/api/v1/servers/"+esc(server)+"/"+action, nil)
}

// StartWebServer starts a web server through its node manager.
func (c *Client) StartWebServer(ctx context.Context, name string) (CommandResult, error) {
	return c.webServerCommand(ctx, name, "start")
}

// StopWebServer stops a web server through its node manager.
func (c *Client) StopWebServer(ctx context.Context, name string) (CommandResult, error) {
	return c.webServerCommand(ctx, name, "stop")
}

// RestartWebServer restarts a web server through its node manager.
func (c *Client) RestartWebServer(ctx context.Context, name string) (CommandResult, error) {
	return c.webServerCommand(ctx, name, "restart")
}

func (c *Client) webServerCommand(ctx context.Context, name, action string) (CommandResult, error) {
	return send[CommandResult](ctx, c, http.MethodPost, "/api/v1/webservers/"+esc(name)+"/"+action, nil)
}

// HAProxyConfig returns the cluster's equivalent HAProxy configuration;
// listen (optional) is the frontend's host:port.
func (c *Client) HAProxyConfig(ctx context.Context, cluster, listen string) (string, error) {
	path := "/api/v1/clusters/" + esc(cluster) + "/haproxy.cfg"
	if listen != "" {
		path += "?listen=" + url.QueryEscape(listen)
	}
	var out []byte
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return string(out), err
}

// StartServer starts a server through its node manager.
func (c *Client) StartServer(ctx context.Context, name string) (CommandResult, error) {
	return c.command(ctx, name, "start")
}

// StopServer stops a server through its node manager.
func (c *Client) StopServer(ctx context.Context, name string) (CommandResult, error) {
	return c.command(ctx, name, "stop")
}

// RestartServer restarts a server through its node manager.
func (c *Client) RestartServer(ctx context.Context, name string) (CommandResult, error) {
	return c.command(ctx, name, "restart")
}

// JobStep is one server's restart within a rolling restart.
type JobStep struct {
	Server         string     `json:"server"`
	State          string     `json:"state"`
	PIDBefore      int        `json:"pid_before,omitempty"` // before the stop
	PID            int        `json:"pid,omitempty"`        // after the start
	SessionsBefore int        `json:"sessions_before"`
	SessionsAfter  int        `json:"sessions_after"`
	StartedAt      *time.Time `json:"started_at,omitempty"`
	FinishedAt     *time.Time `json:"finished_at,omitempty"`
	Error          string     `json:"error,omitempty"`
	Note           string     `json:"note,omitempty"`
}

// Job is a long-running job (a rolling restart).
type Job struct {
	ID                 int64      `json:"id"`
	Type               string     `json:"type"`
	Cluster            string     `json:"cluster"`
	State              string     `json:"state"` // running, completed, failed
	Actor              string     `json:"actor"`
	StepTimeoutSeconds int        `json:"step_timeout_seconds"`
	Order              []string   `json:"order"`
	Current            string     `json:"current,omitempty"`
	Step               int        `json:"step"`    // 1-based step in progress (or failed at)
	Resumes            int        `json:"resumes"` // resumed after an admin server restart
	Steps              []JobStep  `json:"steps"`
	Error              string     `json:"error,omitempty"`
	CreatedAt          time.Time  `json:"created_at"`
	UpdatedAt          time.Time  `json:"updated_at"`
	FinishedAt         *time.Time `json:"finished_at,omitempty"`
}

// RollingRestart starts a rolling restart of the cluster; stepTimeout 0
// takes the server's default.
func (c *Client) RollingRestart(ctx context.Context, cluster string, stepTimeout time.Duration) (Job, error) {
	var out Job
	return out, c.do(ctx, http.MethodPost, "/api/v1/clusters/"+esc(cluster)+"/rolling-restart",
		map[string]int{"step_timeout_seconds": int(stepTimeout / time.Second)}, &out)
}

// Job gets a job.
func (c *Client) Job(ctx context.Context, id int64) (Job, error) {
	return fetch[Job](ctx, c, "/api/v1/jobs/"+strconv.FormatInt(id, 10))
}

// ---- web servers and node managers ----

// WebServers lists web servers; cluster != "" filters.
func (c *Client) WebServers(ctx context.Context, cluster string) ([]domain.WebServer, error) {
	var out []domain.WebServer
	p := "/api/v1/webservers"
	if cluster != "" {
		p += "?cluster=" + url.QueryEscape(cluster)
	}
	return out, c.do(ctx, http.MethodGet, p, nil, &out)
}

// WebServer gets one web server.
func (c *Client) WebServer(ctx context.Context, name string) (domain.WebServer, error) {
	return fetch[domain.WebServer](ctx, c, "/api/v1/webservers/"+esc(name))
}

// CreateWebServer creates a web server.
func (c *Client) CreateWebServer(ctx context.Context, w domain.WebServer) (domain.WebServer, error) {
	return send[domain.WebServer](ctx, c, http.MethodPost, "/api/v1/webservers", w)
}

// UpdateWebServer replaces the web server named w.Name.
func (c *Client) UpdateWebServer(ctx context.Context, w domain.WebServer) (domain.WebServer, error) {
	return send[domain.WebServer](ctx, c, http.MethodPut, "/api/v1/webservers/"+esc(w.Name), w)
}

// DeleteWebServer deletes a web server.
func (c *Client) DeleteWebServer(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/webservers/"+esc(name), nil, nil)
}

// NodeManagers lists node managers.
func (c *Client) NodeManagers(ctx context.Context) ([]domain.NodeManager, error) {
	return fetch[[]domain.NodeManager](ctx, c, "/api/v1/node-managers")
}

// NodeManager gets one node manager.
func (c *Client) NodeManager(ctx context.Context, name string) (domain.NodeManager, error) {
	return fetch[domain.NodeManager](ctx, c, "/api/v1/node-managers/"+esc(name))
}

// CreateNodeManager creates a node manager.
func (c *Client) CreateNodeManager(ctx context.Context, n domain.NodeManager) (domain.NodeManager, error) {
	return send[domain.NodeManager](ctx, c, http.MethodPost, "/api/v1/node-managers", n)
}

// UpdateNodeManager replaces the node manager named n.Name.
func (c *Client) UpdateNodeManager(ctx context.Context, n domain.NodeManager) (domain.NodeManager, error) {
	return send[domain.NodeManager](ctx, c, http.MethodPut, "/api/v1/node-managers/"+esc(n.Name), n)
}

// DeleteNodeManager deletes a node manager.
func (c *Client) DeleteNodeManager(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/node-managers/"+esc(name), nil, nil)
}

// ---- topology, events, audit ----

// Topology types are shared with the domain package.
type (
	Topology        = domain.Topology
	TopologyCluster = domain.TopologyCluster
	TopologyServer  = domain.TopologyServer
	TopologyNode    = domain.TopologyNode
)

// Topology gets the whole domain with live state.
func (c *Client) Topology(ctx context.Context) (Topology, error) {
	return fetch[Topology](ctx, c, "/api/v1/topology")
}

// EventQuery selects events; zero fields match everything.
type EventQuery struct {
	Types    []string
	Cluster  string
	Server   string
	BeforeID int64
	AfterID  int64
	Limit    int // 1..1000; 0: the server's default (100)
}

// Events lists stored events in ascending id order (see GET /api/v1/events).
func (c *Client) Events(ctx context.Context, q EventQuery) ([]domain.Event, error) {
	v := url.Values{}
	if len(q.Types) > 0 {
		v.Set("type", strings.Join(q.Types, ","))
	}
	if q.Cluster != "" {
		v.Set("cluster", q.Cluster)
	}
	if q.Server != "" {
		v.Set("server", q.Server)
	}
	if q.BeforeID > 0 {
		v.Set("before", strconv.FormatInt(q.BeforeID, 10))
	}
	if q.AfterID > 0 {
		v.Set("after", strconv.FormatInt(q.AfterID, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	p := "/api/v1/events"
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	return fetch[[]domain.Event](ctx, c, p)
}

// Audit lists audit entries newest first; beforeID > 0 pages back.
func (c *Client) Audit(ctx context.Context, beforeID int64, limit int) ([]domain.AuditEntry, error) {
	v := url.Values{}
	if beforeID > 0 {
		v.Set("before", strconv.FormatInt(beforeID, 10))
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	p := "/api/v1/audit"
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	return fetch[[]domain.AuditEntry](ctx, c, p)
}

// ---- users, tokens, me ----

// Me describes the caller.
type Me struct {
	Name      string `json:"name"`
	Role      string `json:"role"`
	Auth      string `json:"auth"`
	CSRFToken string `json:"csrf_token,omitempty"`
}

// Me returns who the client's token belongs to.
func (c *Client) Me(ctx context.Context) (Me, error) {
	return fetch[Me](ctx, c, "/api/v1/me")
}

// Users lists console users (admin).
func (c *Client) Users(ctx context.Context) ([]domain.User, error) {
	return fetch[[]domain.User](ctx, c, "/api/v1/users")
}

// User gets one console user (admin).
func (c *Client) User(ctx context.Context, name string) (domain.User, error) {
	return fetch[domain.User](ctx, c, "/api/v1/users/"+esc(name))
}

// CreateUser creates a console user (admin).
func (c *Client) CreateUser(ctx context.Context, name, role, password string) (domain.User, error) {
	return send[domain.User](ctx, c, http.MethodPost, "/api/v1/users", map[string]string{"name": name, "role": role, "password": password})
}

// UpdateUser changes a user's role and, if password != "", its password (admin).
func (c *Client) UpdateUser(ctx context.Context, name, role, password string) (domain.User, error) {
	return send[domain.User](ctx, c, http.MethodPut, "/api/v1/users/"+esc(name), map[string]string{"role": role, "password": password})
}

// DeleteUser deletes a console user (admin).
func (c *Client) DeleteUser(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/users/"+esc(name), nil, nil)
}

// NewToken is a created API token with its secret, shown once.
type NewToken struct {
	domain.Token
	Secret string `json:"token"`
}

// Tokens lists API tokens, without secrets (admin).
func (c *Client) Tokens(ctx context.Context) ([]domain.Token, error) {
	return fetch[[]domain.Token](ctx, c, "/api/v1/tokens")
}

// CreateToken creates an API token; its secret is in the answer, once (admin).
func (c *Client) CreateToken(ctx context.Context, name, role string) (NewToken, error) {
	return send[NewToken](ctx, c, http.MethodPost, "/api/v1/tokens", map[string]string{"name": name, "role": role})
}

// CreateTokenExpiring creates an API token that stops working at expires.
func (c *Client) CreateTokenExpiring(ctx context.Context, name, role string, expires time.Time) (NewToken, error) {
	return send[NewToken](ctx, c, http.MethodPost, "/api/v1/tokens", map[string]string{"name": name, "role": role, "expires_at": expires.UTC().Format(time.RFC3339)})
}

// DeleteToken deletes an API token (admin).
func (c *Client) DeleteToken(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/tokens/"+esc(name), nil, nil)
}
