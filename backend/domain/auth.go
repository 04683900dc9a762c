package domain

import "time"

// Roles, from most to least powerful.
const (
	RoleAdmin    = "admin"    // everything, users and tokens included
	RoleOperator = "operator" // change the domain, push, start/stop
	RoleViewer   = "viewer"   // read only
)

// ValidRole reports whether r is a known role.
func ValidRole(r string) bool {
	return r == RoleAdmin || r == RoleOperator || r == RoleViewer
}

// RoleAllows reports whether role has at least the rights of need.
func RoleAllows(role, need string) bool {
	rank := map[string]int{RoleViewer: 1, RoleOperator: 2, RoleAdmin: 3}
	return rank[role] > 0 && rank[role] >= rank[need]
}

// Principal is who makes a request.
type Principal struct {
	Name string // user name or token name
	Role string
}

// User is a console login.
type User struct {
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

// Token is an API token; the secret is shown once at creation and stored hashed.
type Token struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	CreatedAt time.Time  `json:"created_at"`
	LastUsed  *time.Time `json:"last_used,omitempty"`
	// ExpiresAt, when set, is when the token stops being accepted.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Expired reports whether t is past its expiry at now.
func (t Token) Expired(now time.Time) bool {
	return t.ExpiresAt != nil && !now.Before(*t.ExpiresAt)
}

// Revision is one numbered version of a server's effective session config.
type Revision struct {
	Server   string          `json:"server"`
	Number   int64           `json:"revision"`
	Checksum string          `json:"checksum"`
	Config   SessionConfig   `json:"config"`
	Override SessionOverride `json:"override"`
	// Application is the cluster's application at this revision ("" = the
	// sample app).
	Application string    `json:"application"`
	Actor       string    `json:"actor"`
	Reason      string    `json:"reason"`
	CreatedAt   time.Time `json:"created_at"`
}

// AuditEntry records one change: who did what to which target.
type AuditEntry struct {
	ID     int64     `json:"id"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	Before string    `json:"before"` // JSON, empty for creations
	After  string    `json:"after"`  // JSON, empty for deletions
}
