// Package api is the admin server's REST API (gin) at /api/v1: resources by
// name, one error writer with the envelope {"error":{"code","message",
// "field"}}, strict JSON decoding, roles per route, the OpenAPI document,
// console login, and the delegated endpoints (event stream, node control
// channel, rolling restarts) behind narrow interfaces that answer 503
// "unavailable" when not plugged in.
package api

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"tandem/backend/artifacts"
	"tandem/backend/auth"
	"tandem/backend/control"
	"tandem/backend/domain"
	"tandem/backend/metrics"
	"tandem/backend/pki"
	"tandem/backend/store"
	"tandem/backend/wire"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the embedded OpenAPI 3 document.
func OpenAPI() []byte { return bytes.Clone(openAPI) }

func init() {
	// gin's mode is process-wide; release mode only silences its debug
	// route printing. Nothing else in the admin server reads it.
	gin.SetMode(gin.ReleaseMode)
}

// ControlPlane is the admin end of the control channel (backend/control).
type ControlPlane interface {
	// Live returns what is known right now about a node, by name.
	Live(name string) (domain.LiveState, bool)
	// Push sends each node of the cluster its desired config and waits
	// (bounded) for the acks.
	Push(ctx context.Context, cluster, actor string) ([]domain.PushResult, error)
	// Changed is called after every successful domain write, with the
	// nodes whose desired config it may have changed.
	Changed(ctx context.Context, scope control.Scope)
	// Command asks a node manager to start/stop/restart a process.
	Command(ctx context.Context, nodeManager string, cmd wire.Command) (wire.CommandResult, error)
	// Query asks a managed server about the sessions it holds.
	Query(ctx context.Context, server string, q wire.Query) (wire.QueryResult, error)
	// Disconnect ends a node's control connection (its certificate was revoked).
	Disconnect(name string)
	// Revocations sends every node the revoked certificates, read afresh.
	Revocations(ctx context.Context) error
	// ServeNode serves one node's control-channel WebSocket; the request
	// carries a valid node token.
	ServeNode(w http.ResponseWriter, r *http.Request)
}

// EventStream serves the live event stream (backend/events.Hub).
type EventStream interface {
	ServeStream(w http.ResponseWriter, r *http.Request, f domain.EventFilter, since int64)
}

// RollingOptions tune a rolling restart.
type RollingOptions struct {
	// Order lists the servers in restart order; empty: all, by name.
	Order []string
	// StepTimeout bounds each server's restart; 0: the roller's default.
	StepTimeout time.Duration
}

// Roller runs rolling restarts (backend/rolling). Jobs are JSON-encodable
// values with at least an "id".
type Roller interface {
	StartRolling(ctx context.Context, cluster, actor string, opts RollingOptions) (any, error)
	StartDeploy(ctx context.Context, cluster, actor string, d DeployRequest, stepTimeout time.Duration) (any, error)
	Job(ctx context.Context, id int64) (any, error)
}

// CapacityReporter says what one more failure in a cluster would do
// (backend/capacity).
type CapacityReporter interface {
	Report(ctx context.Context, cluster string) (domain.Capacity, error)
}

// DefaultMaxBodyBytes bounds request bodies.
const DefaultMaxBodyBytes = 1 << 20

// Config assembles the API. Store and Auth are required; Control, Events
// and Roller may be nil (their routes answer 503); Console, when set,
// serves every path outside /api/ (the console's own pages and assets).
type Config struct {
	Store        *store.Store
	Auth         *auth.Authenticator
	Control      ControlPlane
	Events       EventStream
	Roller       Roller
	Metrics      *metrics.Registry
	Console      http.Handler
	Logger       *slog.Logger
	MaxBodyBytes int64
	// Artifacts keeps uploaded application versions; nil: their routes
	// answer 503.
	Artifacts *artifacts.Store
	// PKI is the domain CA that enrols nodes; nil (plain HTTP): the
	// enrolment routes answer 503. NodeCertLifetime: 0 is pki.LeafLifetime.
	PKI              *pki.CA
	NodeCertLifetime time.Duration
	// Capacity and Drills serve the operator insight routes; nil: they
	// answer 503.
	Capacity CapacityReporter
	Drills   Driller
}

type handler struct {
	st       *store.Store
	auth     *auth.Authenticator
	control  ControlPlane
	events   EventStream
	roller   Roller
	log      *slog.Logger
	maxBody  int64
	requests *prometheus.CounterVec
	arts     *artifacts.Store
	capacity CapacityReporter
	drills   Driller
	pki      *pki.CA
	certLife time.Duration
}

// New returns the gin engine serving the API, /healthz and /metrics.
func New(cfg Config) *gin.Engine {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	h := &handler{st: cfg.Store, auth: cfg.Auth, control: cfg.Control, events: cfg.Events, roller: cfg.Roller,
		log: cfg.Logger, maxBody: cfg.MaxBodyBytes, arts: cfg.Artifacts,
		capacity: cfg.Capacity, drills: cfg.Drills, pki: cfg.PKI, certLife: cfg.NodeCertLifetime}
	if h.certLife <= 0 {
		h.certLife = pki.LeafLifetime
	}
	h.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tandem_admin_http_requests_total", Help: "Admin API requests by route and status class.",
	}, []string{"method", "route", "status"})
	if err := cfg.Metrics.Register(h.requests); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			h.requests = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}

	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.Use(requestID(), accessLog(cfg.Logger), h.count(), h.recovery())
	e.NoMethod(func(c *gin.Context) {
		c.AbortWithStatusJSON(http.StatusMethodNotAllowed, ErrorBody{Error: ErrorDetail{Code: "method_not_allowed", Message: "method not allowed"}})
	})
	e.NoRoute(func(c *gin.Context) {
		if cfg.Console != nil && !strings.HasPrefix(c.Request.URL.Path, "/api/") {
			cfg.Console.ServeHTTP(c.Writer, c.Request)
			return
		}
		c.AbortWithStatusJSON(http.StatusNotFound, ErrorBody{Error: ErrorDetail{Code: CodeNotFound, Message: "no such endpoint"}})
	})

	// Public: health, metrics, login. Nothing else answers without a credential.
	e.GET("/healthz", gin.WrapH(metrics.Healthz(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return cfg.Store.Ping(ctx)
	})))
	e.GET("/metrics", gin.WrapH(cfg.Metrics.Handler()))
	v1 := e.Group("/api/v1")
	v1.POST("/login", h.wrap(h.login))

	// Nodes: the domain's node token, not a user credential.
	v1.GET("/nodes/connect", h.wrap(h.nodeConnect))
	v1.POST("/nodes/enroll", h.wrap(h.enrolNode))
	v1.POST("/nodes/renew", h.wrap(h.renewNode))
	v1.GET("/nodes/artifacts/:sum", h.wrap(h.nodeArtifact))
	v1.POST("/nodes/witness", h.wrap(h.witness))

	authed := v1.Group("", h.auth.Middleware(h.writeError))
	view := authed.Group("", auth.Require(domain.RoleViewer, h.writeError))
	oper := authed.Group("", auth.Require(domain.RoleOperator, h.writeError), h.notifyChanged())
	admin := authed.Group("", auth.Require(domain.RoleAdmin, h.writeError))

	// Any authenticated caller.
	view.GET("/me", h.wrap(h.me))
	view.POST("/logout", h.wrap(h.logout))
	view.GET("/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", openAPI) })

	// Viewer: read the domain.
	view.GET("/clusters", clusters.listHandler(h))
	view.GET("/clusters/:name", clusters.getHandler(h))
	view.GET("/clusters/:name/session-config", h.wrap(h.getClusterSession))
	view.GET("/clusters/:name/haproxy.cfg", h.wrap(h.haproxyConfig))
	view.GET("/clusters/:name/deployments", h.wrap(h.listDeployments))
	view.GET("/servers", servers.listHandler(h))
	view.GET("/servers/:name", servers.getHandler(h))
	view.GET("/servers/:name/session-config", h.wrap(h.getServerSession))
	view.GET("/servers/:name/config/revisions", h.wrap(h.listRevisions))
	view.GET("/servers/:name/config/revisions/:n", h.wrap(h.getRevision))
	view.GET("/webservers", webServers.listHandler(h))
	view.GET("/webservers/:name", webServers.getHandler(h))
	view.GET("/node-managers", nodeManagers.listHandler(h))
	view.GET("/applications", applications.listHandler(h))
	view.GET("/node-managers/:name", nodeManagers.getHandler(h))
	view.GET("/applications/:name", applications.getHandler(h))
	view.GET("/applications/:name/versions", h.wrap(h.listVersions))
	view.GET("/topology", h.wrap(h.topology))
	view.GET("/events", h.wrap(h.listEvents))
	view.GET("/events/stream", h.wrap(h.streamEvents))
	view.GET("/audit", h.wrap(h.listAudit))
	view.GET("/jobs", h.wrap(h.listJobs))
	view.GET("/jobs/:id", h.wrap(h.getJob))
	view.GET("/sessions/:id", h.wrap(h.getSession))
	view.GET("/servers/:name/sessions", h.wrap(h.listServerSessions))
	view.GET("/clusters/:name/capacity", h.wrap(h.getCapacity))
	view.GET("/series", h.wrap(h.getSeries))
	view.GET("/failures", h.wrap(h.listFailures))
	view.GET("/clusters/:name/drills", h.wrap(h.listDrills))
	view.GET("/drills/:id", h.wrap(h.getDrill))

	// Operator: change the domain and act on it.
	oper.POST("/clusters", clusters.createHandler(h))
	oper.PUT("/clusters/:name", clusters.putHandler(h))
	oper.PATCH("/clusters/:name", h.wrap(h.patchCluster))
	oper.DELETE("/clusters/:name", clusters.deleteHandler(h))
	oper.PUT("/clusters/:name/application", h.wrap(h.setClusterApplication))
	oper.POST("/clusters/:name/rollback", h.wrap(h.rollbackApplication))
	oper.POST("/clusters/:name/deploy", h.wrap(h.deploy))
	oper.PUT("/clusters/:name/session-config", h.wrap(h.putClusterSession))
	oper.DELETE("/clusters/:name/session-config", h.wrap(h.deleteClusterSession))
	oper.POST("/clusters/:name/push", h.wrap(h.push))
	oper.POST("/clusters/:name/rolling-restart", h.wrap(h.rollingRestart))
	oper.POST("/servers", servers.createHandler(h))
	oper.PUT("/servers/:name", servers.putHandler(h))
	oper.PATCH("/servers/:name", h.wrap(h.patchServer))
	oper.DELETE("/servers/:name", servers.deleteHandler(h))
	oper.PUT("/servers/:name/session-config", h.wrap(h.putServerSession))
	oper.DELETE("/servers/:name/session-config", h.wrap(h.deleteServerSession))
	oper.POST("/servers/:name/config/rollback", h.wrap(h.rollback))
	oper.POST("/servers/:name/acknowledge", h.wrap(h.acknowledgeFailures))
	oper.POST("/servers/:name/start", h.wrap(h.command(wire.ActionStart)))
	oper.POST("/servers/:name/stop", h.wrap(h.command(wire.ActionStop)))
	oper.POST("/servers/:name/restart", h.wrap(h.command(wire.ActionRestart)))
	oper.POST("/webservers", webServers.createHandler(h))
	oper.PUT("/webservers/:name", webServers.putHandler(h))
	oper.DELETE("/webservers/:name", webServers.deleteHandler(h))
	oper.POST("/webservers/:name/start", h.wrap(h.webServerCommand(wire.ActionStart)))
	oper.POST("/webservers/:name/stop", h.wrap(h.webServerCommand(wire.ActionStop)))
	oper.POST("/webservers/:name/restart", h.wrap(h.webServerCommand(wire.ActionRestart)))
	oper.POST("/node-managers", nodeManagers.createHandler(h))
	oper.PUT("/node-managers/:name", nodeManagers.putHandler(h))
	oper.DELETE("/node-managers/:name", nodeManagers.deleteHandler(h))
	oper.POST("/applications", applications.createHandler(h))
	oper.PUT("/applications/:name", applications.putHandler(h))
	oper.DELETE("/applications/:name", applications.deleteHandler(h))
	oper.PUT("/applications/:name/versions/:version", h.wrap(h.putVersion))
	oper.DELETE("/applications/:name/versions/:version", h.wrap(h.deleteVersion))

	// Admin: users and tokens.
	admin.POST("/clusters/:name/drills", h.wrap(h.startDrill))
	admin.POST("/nodes/:name/revoke", h.wrap(h.revokeNode))
	admin.POST("/nodes/:name/allow", h.wrap(h.allowNode))
	admin.GET("/users", h.wrap(h.listUsers))
	admin.POST("/users", h.wrap(h.createUser))
	admin.GET("/users/:name", h.wrap(h.getUser))
	admin.PUT("/users/:name", h.wrap(h.putUser))
	admin.DELETE("/users/:name", h.wrap(h.deleteUser))
	admin.GET("/tokens", h.wrap(h.listTokens))
	admin.POST("/tokens", h.wrap(h.createToken))
	admin.DELETE("/tokens/:name", h.wrap(h.deleteToken))
	return e
}

// wrap turns a handler returning an error into a gin handler; the error,
// if any, is written by writeError.
func (h *handler) wrap(fn func(c *gin.Context) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := fn(c); err != nil {
			h.writeError(c, err)
		}
	}
}

func (h *handler) recovery() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				h.log.Error("api: panic", "path", c.FullPath(), "panic", r, "request_id", c.GetString(requestIDKey))
				if !c.Writer.Written() {
					h.writeError(c, errors.New("panic"))
				}
				c.Abort()
			}
		}()
		c.Next()
	}
}

func (h *handler) count() gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		h.requests.WithLabelValues(c.Request.Method, route, statusClass(c.Writer.Status())).Inc()
	}
}

func statusClass(s int) string {
	return string(rune('0'+s/100)) + "xx"
}

// notifyChanged tells the control plane after every successful write
// which nodes it may have changed: the scope the handler gave touched, or
// every node when it gave none. A handler that changed no desired config
// (a push, which delivers the configs itself; a command) gives an empty
// scope, and the plane is not called.
func (h *handler) notifyChanged() gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Next()
		if h.control == nil || c.Request.Method == http.MethodGet || c.Writer.Status() >= 300 {
			return
		}
		sc := control.Everything
		if v, ok := c.Get(scopeKey); ok {
			sc = v.(control.Scope)
		}
		if !sc.IsEmpty() {
			h.control.Changed(c.Request.Context(), sc)
		}
	}
}

// scopeKey holds, in the gin context, the control.Scope of a write.
const scopeKey = "tandem.scope"

// touched records the nodes whose desired config the request's write may
// have changed, for notifyChanged.
func touched(c *gin.Context, sc control.Scope) { c.Set(scopeKey, sc) }

// beforeWrite reads the named resource with get, then runs write on it, in
// one transaction: the resource as it was before the write (which the
// write's scope names) cannot change in between. It returns that resource.
func beforeWrite[T any](c *gin.Context, st *store.Store, get func(*store.Store, context.Context, string) (T, error),
	name string, write func(tx *store.Store, before T) error) (T, error) {
	var before T
	err := st.InTx(c.Request.Context(), func(tx *store.Store) error {
		var err error
		if before, err = get(tx, c.Request.Context(), name); err != nil {
			return err
		}
		return write(tx, before)
	})
	return before, err
}

// placement is where a server or web server sits: its cluster and node
// manager, the nodes whose configs list it.
type placement struct{ cluster, nodeManager string }

// placed is the scope of a write to servers or web servers: every
// placement they had before and have after it.
func placed(ps ...placement) control.Scope {
	var sc control.Scope
	for _, p := range ps {
		if p.cluster != "" {
			sc.Clusters = append(sc.Clusters, p.cluster)
		}
		if p.nodeManager != "" {
			sc.NodeManagers = append(sc.NodeManagers, p.nodeManager)
		}
	}
	return sc
}

func actor(c *gin.Context) string {
	id, ok := auth.IdentityFrom(c)
	if !ok {
		return "anonymous"
	}
	return id.Name
}

// bind decodes the request body into out with gin's binding machinery and
// the strictJSON binding: size-limited, unknown fields refused, exactly one
// JSON value. (gin's own JSON binding can only refuse unknown fields
// through a process-wide switch; strictJSON keeps that local.)
func (h *handler) bind(c *gin.Context, out any) error {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, h.maxBody)
	return c.ShouldBindWith(out, strictJSON{})
}

// strictJSON is a gin binding.Binding that decodes strictly.
type strictJSON struct{}

func (strictJSON) Name() string { return "json" }

func (strictJSON) Bind(r *http.Request, out any) error {
	if r.Body == nil {
		return badRequest("", "request body must be a JSON object")
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &tooLargeError{limit: mbe.Limit}
		}
		return badRequest("", "cannot read the request body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("", "request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return badRequest(jsonField(err), "malformed JSON: "+jsonProblem(err))
	}
	if dec.More() {
		return badRequest("", "malformed JSON: more than one value")
	}
	return nil
}

func jsonField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return strings.Trim(f, `"`)
	}
	return ""
}

func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "syntax error"
	case errors.As(err, &te):
		return "field " + te.Field + " must be " + te.Type.String()
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "unexpected end of input"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "cannot decode"
}
