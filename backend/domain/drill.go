package domain

import "time"

// Drill faults.
const (
	FaultKill   = "kill"   // SIGKILL: a crash; the node manager restarts it
	FaultFreeze = "freeze" // SIGSTOP for Seconds, then SIGCONT: a long pause
)

// Drill states.
const (
	DrillRunning = "running"
	DrillPassed  = "passed"
	DrillFailed  = "failed"
)

// DrillRequest asks for a failover drill on one server of a cluster.
type DrillRequest struct {
	Server  string `json:"server"`
	Fault   string `json:"fault"`
	Seconds int    `json:"seconds"` // freeze: how long; kill: ignored
}

// Drill is a failover drill and its report.
type Drill struct {
	ID         int64       `json:"id"`
	Cluster    string      `json:"cluster"`
	Server     string      `json:"server"`
	Fault      string      `json:"fault"`
	Seconds    int         `json:"seconds"`
	Actor      string      `json:"actor"`
	State      string      `json:"state"`
	Phase      string      `json:"phase"` // what the drill is doing or waiting for
	Report     DrillReport `json:"report"`
	Error      string      `json:"error,omitempty"`
	StartedAt  time.Time   `json:"started_at"`
	FinishedAt *time.Time  `json:"finished_at,omitempty"`
}

// DrillReport is what a drill measured. Times are milliseconds from the
// fault; -1 when it did not happen.
type DrillReport struct {
	SessionsBefore int     `json:"sessions_before"` // the cluster's sessions when the fault was applied
	SessionsAfter  int     `json:"sessions_after"`
	ServerSessions int     `json:"server_sessions"` // the faulted server's sessions then
	TakesOver      string  `json:"takes_over"`      // its backup then
	DetectionMS    int64   `json:"detection_ms"`    // first sign of the fault (suspect, down, or a takeover)
	TakeoverMS     int64   `json:"takeover_ms"`     // its sessions served by the backup
	RecoveryMS     int64   `json:"recovery_ms"`     // the server running again
	FailbackMS     int64   `json:"failback_ms"`     // its sessions back home
	TakenOver      int     `json:"taken_over"`      // sessions the takeovers moved
	FailedBack     int     `json:"failed_back"`     // sessions the failbacks moved home
	Retried        uint64  `json:"retried"`         // requests the web servers sent on to another member during the drill
	Failed         uint64  `json:"failed"`          // requests the web servers answered with an error page
	SessionsLost   int     `json:"sessions_lost"`   // must be 0
	Verdict        string  `json:"verdict"`
	Events         []Event `json:"events"` // what the cluster recorded during the drill
}
