package domain

import (
	"net"
	"strconv"
	"time"
)

// Server states as the admin server derives them.
const (
	StateStarting = "starting"
	StateRunning  = "running"
	StateSuspect  = "suspect"
	StateFailed   = "failed"
	StateStopped  = "stopped"
)

// Server is a managed server: one process of a cluster.
type Server struct {
	Name    string `json:"name"`
	Cluster string `json:"cluster"`
	Listen  string `json:"listen"`
	// InternalListen serves replication and the peers' calls, never the
	// users' (default: the port after Listen's, on the same host).
	InternalListen string `json:"internal_listen"`
	Route          string `json:"route"`
	NodeManager    string `json:"node_manager"`
	Backup         string `json:"backup"` // explicit backup server, used with backup_policy "explicit"
	// Advertise is the host the other machines reach the server at (its
	// ports stay listen's and internal_listen's): set by the server itself
	// (--advertise, or the address its control connection came from when it
	// binds every address); read-only here.
	Advertise string    `json:"advertise"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ApplyDefaults fills the route from the name and the internal address
// from the listen address when they are empty.
func (s *Server) ApplyDefaults() {
	if s.Route == "" {
		s.Route = DefaultRoute(s.Name)
	}
	if s.InternalListen == "" {
		s.InternalListen = NextPort(s.Listen)
	}
}

// NextPort is host:port+1 for a valid host:port below 65535, else "".
func NextPort(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p >= 65535 {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(p+1))
}

// Validate checks the fields that need no other records; the store checks
// that the cluster, node manager and backup exist.
func (s *Server) Validate() error {
	if err := checkName("name", s.Name); err != nil {
		return err
	}
	if err := checkName("cluster", s.Cluster); err != nil {
		return err
	}
	if err := CheckListen("listen", s.Listen); err != nil {
		return err
	}
	if err := CheckListen("internal_listen", s.InternalListen); err != nil {
		return err
	}
	if s.InternalListen == s.Listen {
		return Invalid("internal_listen", "must differ from listen: the application port never serves the peers' endpoints")
	}
	if !ValidRoute(s.Route) {
		return Invalid("route", "must match [a-z0-9][a-z0-9-]{0,15}")
	}
	if s.NodeManager != "" {
		if err := checkName("node_manager", s.NodeManager); err != nil {
			return err
		}
	}
	if s.Backup != "" {
		if err := checkName("backup", s.Backup); err != nil {
			return err
		}
		if s.Backup == s.Name {
			return Invalid("backup", "must be another server of the same cluster")
		}
	}
	return nil
}

// WebServer is a front web server routing one cluster's traffic by cookie.
type WebServer struct {
	Name        string    `json:"name"`
	Cluster     string    `json:"cluster"`
	Listen      string    `json:"listen"`
	NodeManager string    `json:"node_manager"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Validate checks the web server's fields.
func (w *WebServer) Validate() error {
	if err := checkName("name", w.Name); err != nil {
		return err
	}
	if err := checkName("cluster", w.Cluster); err != nil {
		return err
	}
	if err := CheckListen("listen", w.Listen); err != nil {
		return err
	}
	if w.NodeManager != "" {
		return checkName("node_manager", w.NodeManager)
	}
	return nil
}

// NodeManager is a per-host supervisor of server processes (WebLogic's
// machine + node manager).
type NodeManager struct {
	Name      string    `json:"name"`
	Listen    string    `json:"listen"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Validate checks the node manager's fields.
func (n *NodeManager) Validate() error {
	if err := checkName("name", n.Name); err != nil {
		return err
	}
	return CheckListen("listen", n.Listen)
}

// LiveState is what the admin server knows right now about a node, from its
// control-channel connection and heartbeats.
type LiveState struct {
	State           string    `json:"state"` // State*
	PID             int       `json:"pid"`
	Sessions        int       `json:"sessions"`
	BackupSessions  int       `json:"backup_sessions"`
	Backup          string    `json:"backup"`
	AppliedRevision int64     `json:"applied_revision"`
	AppliedChecksum string    `json:"applied_checksum"`
	Unprotected     int       `json:"unprotected"`
	Requests        uint64    `json:"requests"`          // users' requests served by this process (a counter)
	LagMS           int64     `json:"lag_ms"`            // age of the oldest write not yet copied to the backup
	Retried         uint64    `json:"retried,omitempty"` // a web server's requests sent on to another member (a counter)
	Failed          uint64    `json:"failed,omitempty"`  // a web server's requests answered with its own error page (a counter)
	LastSeen        time.Time `json:"last_seen"`
	App             AppStatus `json:"app"`
	Host            *HostInfo `json:"host,omitempty"` // a node manager's machine
}

// HostInfo is the machine a node manager runs on, as it reports it.
type HostInfo struct {
	Name        string   `json:"name"`
	Addresses   []string `json:"addresses"`
	CPUs        int      `json:"cpus"`
	MemoryBytes uint64   `json:"memory_bytes"`
}

// AppStatus is a managed server's application as it reports it.
type AppStatus struct {
	Name     string `json:"name"`              // application name; empty for the built-in sample app
	Kind     string `json:"kind"`              // AppProcess, AppGo, or empty (sample app)
	Version  string `json:"version,omitempty"` // the uploaded version it runs, if any
	State    string `json:"state"`             // AppState*
	PID      int    `json:"pid,omitempty"`
	Restarts int    `json:"restarts,omitempty"`
	Message  string `json:"message,omitempty"` // last exit or health failure reason
}

// PushResult is the outcome of pushing config to one node.
type PushResult struct {
	Node     string `json:"node"`
	Kind     string `json:"kind"`
	Revision int64  `json:"revision"`
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
}
