package domain

import "time"

// Event types (DESIGN "Events"), plus session.lost and job events.
const (
	EventServerUp         = "server.up"
	EventServerDown       = "server.down"
	EventServerSuspect    = "server.suspect"
	EventFailover         = "failover"
	EventFailback         = "failback"
	EventBackupChanged    = "backup.changed"
	EventSessionLost      = "session.lost"
	EventReplicationLag   = "replication.degraded" // sync write held by one copy only
	EventConfigPushed     = "config.pushed"
	EventConfigApplied    = "config.applied"
	EventConfigFailed     = "config.failed"
	EventRollingStarted   = "rolling.started"
	EventRollingStep      = "rolling.step"
	EventRollingCompleted = "rolling.completed"
	EventRollingFailed    = "rolling.failed"
	EventRollingResumed   = "rolling.resumed" // a job resumed after an admin restart
	EventProcessStarted   = "process.started"
	EventProcessExited    = "process.exited"
	EventAppStarted       = "app.started"      // the application process answers its health path
	EventAppExited        = "app.exited"       // the application process exited (reason, last stderr lines)
	EventAppUnhealthy     = "app.unhealthy"    // the application did not answer its health path (reason)
	EventAppFetchFailed   = "app.fetch_failed" // a version's archive could not be fetched or checked (reason)
	EventDeployStarted    = "deploy.started"
	EventDeployStep       = "deploy.step"
	EventDeployCompleted  = "deploy.completed"
	EventDeployFailed     = "deploy.failed"
	EventDeployResumed    = "deploy.resumed"
	EventLoginLocked      = "auth.locked"      // console logins of a user or an address refused for a while after failures
	EventCapacityWarning  = "capacity.warning" // one more failure would overflow a server or lose copies (and when that ends)
	EventDrillStarted     = "drill.started"
	EventDrillCompleted   = "drill.completed"
	EventDrillFailed      = "drill.failed"
)

// Event is one thing that happened in the domain. ID is assigned by the
// admin server's store and only grows.
type Event struct {
	ID       int64     `json:"id"`
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	Cluster  string    `json:"cluster"`
	Server   string    `json:"server"`
	Peer     string    `json:"peer"`
	Sessions int       `json:"sessions"`
	Message  string    `json:"message"`
}

// EventFilter selects events; zero fields match everything.
type EventFilter struct {
	Types    []string
	Cluster  string
	Server   string
	AfterID  int64 // only events with ID > AfterID
	BeforeID int64 // only events with ID < BeforeID (paging backwards); 0: no bound
	Limit    int
}

// Match reports whether e passes the filter (IDs and limit aside).
func (f EventFilter) Match(e Event) bool {
	if f.Cluster != "" && e.Cluster != f.Cluster {
		return false
	}
	if f.Server != "" && e.Server != f.Server && e.Peer != f.Server {
		return false
	}
	if len(f.Types) == 0 {
		return true
	}
	for _, t := range f.Types {
		if t == e.Type {
			return true
		}
	}
	return false
}
