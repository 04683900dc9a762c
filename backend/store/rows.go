package store

import (
	"time"

	"tandem/backend/domain"
)

// Row types mirror migrations/*.sql; gorm maps them, the schema stays in SQL.

type nodeManagerRow struct {
	Name      string `gorm:"primaryKey"`
	Listen    string
	CreatedAt time.Time
	UpdatedAt time.Time
}

func (nodeManagerRow) TableName() string { return "node_managers" }

func (r nodeManagerRow) domain() domain.NodeManager {
	return domain.NodeManager{Name: r.Name, Listen: r.Listen, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

type clusterRow struct {
	Name                string `gorm:"primaryKey"`
	Description         string
	FailoverMode        string
	BackupPolicy        string
	HeartbeatIntervalMS int  `gorm:"column:heartbeat_interval_ms"`
	HeartbeatTimeoutMS  int  `gorm:"column:heartbeat_timeout_ms"`
	MemberTLS           bool `gorm:"column:member_tls"`
	Application         *string
	AppVersion          *string
	CreatedAt           time.Time
	UpdatedAt           time.Time
}

func (clusterRow) TableName() string { return "clusters" }

func (r clusterRow) domain() domain.Cluster {
	return domain.Cluster{Name: r.Name, Description: r.Description, FailoverMode: r.FailoverMode,
		BackupPolicy: r.BackupPolicy, HeartbeatIntervalMS: r.HeartbeatIntervalMS,
		HeartbeatTimeoutMS: r.HeartbeatTimeoutMS, MemberTLS: r.MemberTLS, Application: deref(r.Application), AppVersion: deref(r.AppVersion), CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

func clusterToRow(c domain.Cluster) clusterRow {
	return clusterRow{Name: c.Name, Description: c.Description, FailoverMode: c.FailoverMode,
		BackupPolicy: c.BackupPolicy, HeartbeatIntervalMS: c.HeartbeatIntervalMS,
		HeartbeatTimeoutMS: c.HeartbeatTimeoutMS, MemberTLS: c.MemberTLS, Application: nullable(c.Application), AppVersion: nullable(c.AppVersion), CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
}

type applicationRow struct {
	Name                  string `gorm:"primaryKey"`
	Description           string
	Kind                  string
	Command               string // JSON
	Env                   string // JSON
	HealthPath            string
	StartTimeoutSeconds   int
	RequestTimeoutSeconds int
	CreatedAt             time.Time
	UpdatedAt             time.Time
}

func (applicationRow) TableName() string { return "applications" }

type serverRow struct {
	Name           string `gorm:"primaryKey"`
	Cluster        string
	Listen         string
	InternalListen string
	Route          string
	NodeManager    *string
	Backup         *string
	Advertise      string
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

func (serverRow) TableName() string { return "servers" }

func (r serverRow) domain() domain.Server {
	s := domain.Server{Name: r.Name, Cluster: r.Cluster, Listen: r.Listen, InternalListen: r.InternalListen, Route: r.Route,
		NodeManager: deref(r.NodeManager), Backup: deref(r.Backup), Advertise: r.Advertise, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
	s.ApplyDefaults() // a server defined before internal_listen existed
	return s
}

func serverToRow(s domain.Server) serverRow {
	return serverRow{Name: s.Name, Cluster: s.Cluster, Listen: s.Listen, InternalListen: s.InternalListen, Route: s.Route,
		NodeManager: nullable(s.NodeManager), Backup: nullable(s.Backup), Advertise: s.Advertise, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
}

type webServerRow struct {
	Name        string `gorm:"primaryKey"`
	Cluster     string
	Listen      string
	NodeManager *string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

func (webServerRow) TableName() string { return "webservers" }

func (r webServerRow) domain() domain.WebServer {
	return domain.WebServer{Name: r.Name, Cluster: r.Cluster, Listen: r.Listen,
		NodeManager: deref(r.NodeManager), CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

type revisionRow struct {
	ID          int64 `gorm:"primaryKey"`
	Server      string
	Number      int64
	Checksum    string
	Config      string
	Override    string
	Actor       string
	Reason      string
	Application string
	CreatedAt   time.Time
}

func (revisionRow) TableName() string { return "revisions" }

type auditRow struct {
	ID     int64 `gorm:"primaryKey"`
	Time   time.Time
	Actor  string
	Action string
	Target string
	Before string
	After  string
}

func (auditRow) TableName() string { return "audit" }

type userRow struct {
	Name         string `gorm:"primaryKey"`
	Role         string
	PasswordHash string
	CreatedAt    time.Time
}

func (userRow) TableName() string { return "users" }

type tokenRow struct {
	ID        int64 `gorm:"primaryKey"`
	Name      string
	Role      string
	Hash      string
	CreatedAt time.Time
	LastUsed  *time.Time
	ExpiresAt *time.Time
}

func (tokenRow) TableName() string { return "tokens" }

func (r tokenRow) domain() domain.Token {
	return domain.Token{ID: r.ID, Name: r.Name, Role: r.Role, CreatedAt: r.CreatedAt, LastUsed: r.LastUsed, ExpiresAt: r.ExpiresAt}
}

type eventRow struct {
	ID       int64 `gorm:"primaryKey"`
	Time     time.Time
	Type     string
	Cluster  string
	Server   string
	Peer     string
	Sessions int
	Message  string
}

func (eventRow) TableName() string { return "events" }

func (r eventRow) event() domain.Event {
	return domain.Event{ID: r.ID, Time: r.Time, Type: r.Type, Cluster: r.Cluster, Server: r.Server, Peer: r.Peer, Sessions: r.Sessions, Message: r.Message}
}

type consoleSessionRow struct {
	Hash      string `gorm:"primaryKey"`
	User      string
	CsrfToken string
	CreatedAt time.Time
	ExpiresAt time.Time
}

func (consoleSessionRow) TableName() string { return "console_sessions" }
