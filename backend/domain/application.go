package domain

import (
	"regexp"
	"strings"
	"time"
)

// Application kinds.
const (
	// AppProcess is an application in any language: the managed server
	// starts it as a child process on a loopback port and proxies to it,
	// exchanging the session in Tandem-Session* headers.
	AppProcess = "process"
	// AppGo is an operator's Go binary built with the sdk package: the
	// node manager starts it instead of `tandem server`, with the same flags.
	AppGo = "go"
)

// Application defaults.
const (
	DefaultHealthPath            = "/healthz"
	DefaultStartTimeoutSeconds   = 30
	DefaultRequestTimeoutSeconds = 30
)

// App process states, as a managed server reports them (TopologyServer.AppState).
const (
	AppStateEmbedded  = "embedded"  // the sample app or an SDK binary: no child process
	AppStateStarting  = "starting"  // started, health path not answered yet
	AppStateRunning   = "running"   // answering its health path
	AppStateUnhealthy = "unhealthy" // running but its health path fails
	AppStateExited    = "exited"    // exited; restarted after a backoff
	AppStateFailed    = "failed"    // gave up after too many restarts
)

// Application is the operator's application, set per cluster.
type Application struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Kind        string            `json:"kind"`
	Command     []string          `json:"command"`
	Env         map[string]string `json:"env"`
	HealthPath  string            `json:"health_path"`
	// StartTimeoutSeconds bounds how long a new process may take to answer
	// its health path.
	StartTimeoutSeconds int `json:"start_timeout_seconds"`
	// RequestTimeoutSeconds bounds one request's wait for the answer's
	// headers (process kind); past it the user gets 504.
	RequestTimeoutSeconds int       `json:"request_timeout_seconds"`
	CreatedAt             time.Time `json:"created_at"`
	UpdatedAt             time.Time `json:"updated_at"`
}

// ApplyDefaults fills zero fields with the documented defaults.
func (a *Application) ApplyDefaults() {
	if a.HealthPath == "" {
		a.HealthPath = DefaultHealthPath
	}
	if a.StartTimeoutSeconds == 0 {
		a.StartTimeoutSeconds = DefaultStartTimeoutSeconds
	}
	if a.RequestTimeoutSeconds == 0 {
		a.RequestTimeoutSeconds = DefaultRequestTimeoutSeconds
	}
	if a.Env == nil {
		a.Env = map[string]string{}
	}
	if a.Command == nil {
		a.Command = []string{}
	}
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// Validate checks every field; the error names the first bad one.
func (a *Application) Validate() error {
	if err := checkName("name", a.Name); err != nil {
		return err
	}
	if len(a.Description) > 1024 {
		return Invalid("description", "must be at most 1024 bytes")
	}
	switch a.Kind {
	case AppProcess, AppGo:
	default:
		return Invalid("kind", "must be %q or %q", AppProcess, AppGo)
	}
	if len(a.Command) == 0 || a.Command[0] == "" {
		return Invalid("command", "is required: the program and its arguments, e.g. [\"python3\",\"/srv/cart/app.py\"]")
	}
	if len(a.Command) > 64 {
		return Invalid("command", "must have at most 64 elements")
	}
	for _, arg := range a.Command {
		if len(arg) > 4096 || strings.ContainsRune(arg, 0) {
			return Invalid("command", "each element must be at most 4096 bytes without NUL")
		}
	}
	if len(a.Env) > 64 {
		return Invalid("env", "must have at most 64 variables")
	}
	for k, v := range a.Env {
		if !envNameRE.MatchString(k) {
			return Invalid("env", "variable name %q must match [A-Za-z_][A-Za-z0-9_]*", k)
		}
		if k == "PORT" || strings.HasPrefix(k, "TANDEM_") {
			return Invalid("env", "variable %q is set by Tandem itself (PORT and TANDEM_*)", k)
		}
		if len(v) > 4096 || strings.ContainsRune(v, 0) {
			return Invalid("env", "value of %q must be at most 4096 bytes without NUL", k)
		}
	}
	if !strings.HasPrefix(a.HealthPath, "/") || len(a.HealthPath) > 1024 || strings.ContainsAny(a.HealthPath, " \x00\r\n\t") {
		return Invalid("health_path", "must be a path starting with / (default /healthz)")
	}
	if a.StartTimeoutSeconds < 1 || a.StartTimeoutSeconds > 600 {
		return Invalid("start_timeout_seconds", "must be from 1 to 600")
	}
	if a.RequestTimeoutSeconds < 1 || a.RequestTimeoutSeconds > 3600 {
		return Invalid("request_timeout_seconds", "must be from 1 to 3600")
	}
	return nil
}

// AppVersion is one uploaded version of an application: a gzipped tar
// archive kept by its SHA-256 (backend/artifacts).
type AppVersion struct {
	Application string    `json:"application"`
	Version     string    `json:"version"`
	SHA256      string    `json:"sha256"`
	Size        int64     `json:"size"`
	Actor       string    `json:"actor"`
	CreatedAt   time.Time `json:"created_at"`
}

var versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckVersion validates a version name ([A-Za-z0-9][A-Za-z0-9._-]{0,63}, e.g. v2 or 1.4.0).
func CheckVersion(field, v string) error {
	if !versionRE.MatchString(v) {
		return Invalid(field, "must match [A-Za-z0-9][A-Za-z0-9._-]{0,63} (e.g. v2 or 1.4.0)")
	}
	return nil
}

// Deployment is one change of the application a cluster runs ("" = the
// built-in sample app; version "" = the command as defined).
type Deployment struct {
	ID              int64     `json:"id"`
	Cluster         string    `json:"cluster"`
	FromApplication string    `json:"from_application"`
	FromVersion     string    `json:"from_version"`
	ToApplication   string    `json:"to_application"`
	ToVersion       string    `json:"to_version"`
	Kind            string    `json:"kind"` // DeploySet, DeployRollback or DeployJob
	Actor           string    `json:"actor"`
	CreatedAt       time.Time `json:"created_at"`
}

// Deployment kinds.
const (
	DeploySet      = "set"      // PUT /clusters/{name}/application: every server at once
	DeployRollback = "rollback" // POST /clusters/{name}/rollback: a deploy job back
	DeployJob      = "deploy"   // a deploy job: one server at a time
)
