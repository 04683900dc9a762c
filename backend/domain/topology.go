package domain

import "time"

// Topology is the whole domain with live state (GET /api/v1/topology).
type Topology struct {
	Clusters     []TopologyCluster `json:"clusters"`
	NodeManagers []TopologyNode    `json:"node_managers"`
}

// TopologyCluster is a cluster with its members.
type TopologyCluster struct {
	Cluster
	Servers    []TopologyServer `json:"servers"`
	WebServers []TopologyNode   `json:"webservers"`
}

// TopologyServer is a managed server with its live state. Backup is the
// live backup when the server reports one, else the configured one.
type TopologyServer struct {
	Name             string `json:"name"`
	Cluster          string `json:"cluster"`
	State            string `json:"state"`
	PID              int    `json:"pid"`
	Listen           string `json:"listen"`
	Route            string `json:"route"`
	NodeManager      string `json:"node_manager"`
	Backup           string `json:"backup"`
	ConfiguredBackup string `json:"configured_backup"`
	Sessions         int    `json:"sessions"`
	BackupSessions   int    `json:"backup_sessions"`
	Unprotected      int    `json:"unprotected"`
	DesiredRevision  int64  `json:"desired_revision"`
	AppliedRevision  int64  `json:"applied_revision"`
	// Application is the cluster's desired application ("" = sample app);
	// App is what the server reports it runs.
	Application string    `json:"application"`
	AppVersion  string    `json:"app_version"` // the version it should run (its deploy pin, else the cluster's)
	App         AppStatus `json:"app"`
	LastSeen    time.Time `json:"last_seen,omitzero"`
	// Host is the machine its node manager reports ("" when unknown).
	Host string `json:"host,omitempty"`
}

// TopologyNode is a web server or node manager with its live state.
type TopologyNode struct {
	Name        string    `json:"name"`
	Cluster     string    `json:"cluster,omitempty"`
	Listen      string    `json:"listen"`
	NodeManager string    `json:"node_manager,omitempty"`
	State       string    `json:"state"`
	PID         int       `json:"pid"`
	LastSeen    time.Time `json:"last_seen,omitzero"`
	// Host: a web server's machine name (its node manager's); HostInfo: a
	// node manager's machine as it reports it.
	Host     string    `json:"host,omitempty"`
	HostInfo *HostInfo `json:"host_info,omitempty"`
}
