package domain

import "time"

// Sample is one server's state and load at one time (the history).
type Sample struct {
	Time           time.Time `json:"t"`
	Cluster        string    `json:"-"`
	Server         string    `json:"-"`
	State          string    `json:"state"`
	Sessions       float64   `json:"sessions"`
	BackupSessions float64   `json:"backup_sessions"`
	RPS            float64   `json:"rps"` // users' requests per second
	LagMS          int64     `json:"lag_ms"`
	Unprotected    float64   `json:"unprotected"`
}

// SeriesQuery selects history: a time range, optionally one cluster or
// one server, averaged over Step.
type SeriesQuery struct {
	Cluster string
	Server  string
	From    time.Time
	To      time.Time
	Step    time.Duration
}

// Failure is a server failure not yet acknowledged by an operator.
type Failure struct {
	Server  string    `json:"server"`
	Cluster string    `json:"cluster"`
	EventID int64     `json:"event_id"`
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
	Count   int       `json:"count"` // unacknowledged failures of this server
}
