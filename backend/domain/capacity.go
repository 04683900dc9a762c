package domain

// Capacity is what one more failure in a cluster would do now.
type Capacity struct {
	Cluster string `json:"cluster"`
	// Healthy is false when one failure would overflow a server, lose
	// sessions, or leave sessions with one copy for good.
	Healthy bool `json:"healthy"`
	// Unprotected is the cluster's sessions with no live backup copy now.
	Unprotected int              `json:"unprotected"`
	Warnings    []string         `json:"warnings"`
	Servers     []ServerCapacity `json:"servers"`
}

// ServerCapacity is one server's load and what its death would do.
type ServerCapacity struct {
	Name           string         `json:"name"`
	State          string         `json:"state"`
	Sessions       int            `json:"sessions"`
	BackupSessions int            `json:"backup_sessions"`
	MaxSessions    int            `json:"max_sessions"` // 0: no limit
	Backup         string         `json:"backup"`
	IfItFails      *FailureImpact `json:"if_it_fails,omitempty"` // nil for a server that is not running
}

// FailureImpact is what a server's death would do now.
type FailureImpact struct {
	// TakesOver is the server that would serve its sessions (its backup);
	// "" when it has none: its sessions would be lost.
	TakesOver string `json:"takes_over"`
	// ResultingSessions is TakesOver's session count afterwards, against
	// its MaxSessions.
	ResultingSessions int  `json:"resulting_sessions"`
	MaxSessions       int  `json:"max_sessions"`
	Overflow          bool `json:"overflow"`
	// Lost is the sessions with no copy anywhere else (no backup, or
	// unprotected now).
	Lost int `json:"lost"`
	// SingleCopy is the sessions left with one copy right after: those
	// taken over and those whose copy it held, until they are copied again.
	SingleCopy int `json:"single_copy"`
	// StaysSingleCopy: no running server would be left to copy them to.
	StaysSingleCopy bool `json:"stays_single_copy"`
}
