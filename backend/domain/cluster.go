package domain

import "time"

// Failover modes: who may take over a session whose primary looks down.
const (
	// FailoverImmediate is WebLogic's behaviour: the backup takes over at once.
	FailoverImmediate = "immediate"
	// FailoverVerify is JEUS's: the receiving server first asks the primary
	// directly and takes over only if it does not answer.
	FailoverVerify = "verify"
)

// Backup policies: how a server's backup is chosen.
const (
	// BackupRing picks the next live server of the cluster in name order.
	BackupRing = "ring"
	// BackupExplicit uses each server's configured backup.
	BackupExplicit = "explicit"
)

// Heartbeat defaults: well under WebLogic's 30 s (500 ms, 3 misses).
const (
	DefaultHeartbeatIntervalMS = 500
	DefaultHeartbeatTimeoutMS  = 1500
)

// Cluster is a group of managed servers that back each other's sessions up.
type Cluster struct {
	Name                string `json:"name"`
	Description         string `json:"description"`
	FailoverMode        string `json:"failover_mode"`
	BackupPolicy        string `json:"backup_policy"`
	HeartbeatIntervalMS int    `json:"heartbeat_interval_ms"`
	HeartbeatTimeoutMS  int    `json:"heartbeat_timeout_ms"`
	// MemberTLS makes the web servers reach the cluster's servers over TLS,
	// checking each server's domain certificate (members on other hosts).
	// It needs the domain CA (not an admin server on --plain-http).
	MemberTLS bool `json:"member_tls"`
	// Application names the application the cluster's servers run; empty
	// is the built-in sample app. Set with PUT /clusters/{name}/application.
	Application string `json:"application"`
	// AppVersion is the uploaded version of Application the servers run
	// ("" = its command as defined, without an archive).
	AppVersion string    `json:"app_version"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// ApplyDefaults fills zero fields with the documented defaults.
func (c *Cluster) ApplyDefaults() {
	if c.FailoverMode == "" {
		c.FailoverMode = FailoverImmediate
	}
	if c.BackupPolicy == "" {
		c.BackupPolicy = BackupRing
	}
	if c.HeartbeatIntervalMS == 0 {
		c.HeartbeatIntervalMS = DefaultHeartbeatIntervalMS
	}
	if c.HeartbeatTimeoutMS == 0 {
		c.HeartbeatTimeoutMS = DefaultHeartbeatTimeoutMS
	}
}

// Validate checks every field; the error names the first bad one.
func (c *Cluster) Validate() error {
	if err := checkName("name", c.Name); err != nil {
		return err
	}
	if len(c.Description) > 1024 {
		return Invalid("description", "must be at most 1024 bytes")
	}
	switch c.FailoverMode {
	case FailoverImmediate, FailoverVerify:
	default:
		return Invalid("failover_mode", "must be %q or %q", FailoverImmediate, FailoverVerify)
	}
	switch c.BackupPolicy {
	case BackupRing, BackupExplicit:
	default:
		return Invalid("backup_policy", "must be %q or %q", BackupRing, BackupExplicit)
	}
	if c.HeartbeatIntervalMS < 50 || c.HeartbeatIntervalMS > 60000 {
		return Invalid("heartbeat_interval_ms", "must be from 50 to 60000")
	}
	if c.HeartbeatTimeoutMS < 2*c.HeartbeatIntervalMS || c.HeartbeatTimeoutMS > 300000 {
		return Invalid("heartbeat_timeout_ms", "must be at least twice heartbeat_interval_ms and at most 300000")
	}
	return nil
}
