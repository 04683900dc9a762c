package domain

import "time"

// SessionInfo is what the session inspector shows of one session: where
// it lives and its shape, attribute values only on request.
type SessionInfo struct {
	ID         string    `json:"id"`
	Cluster    string    `json:"cluster"`
	Owner      string    `json:"owner"`  // server that serves it
	Backup     string    `json:"backup"` // server holding its copy; "" if none
	Home       string    `json:"home"`   // server that created it (failback target)
	Epoch      uint64    `json:"epoch"`
	Version    uint64    `json:"version"`
	Bytes      int       `json:"bytes"`
	CreatedAt  time.Time `json:"created_at"`
	LastAccess time.Time `json:"last_access"`
	ExpiresAt  time.Time `json:"expires_at"`
	Attributes []string  `json:"attributes"`
	// Values are the attribute values (strings, integers, or base64 for
	// bytes); only with ?values=1 for the admin role.
	Values map[string]any `json:"values,omitempty"`
	// Copies lists every server that answered holding the session.
	Copies []SessionCopy `json:"copies,omitempty"`
}

// SessionCopy is one server's copy of a session, as that server reports it.
type SessionCopy struct {
	Server  string `json:"server"`
	Role    string `json:"role"` // SessionOwner or SessionBackupCopy
	Epoch   uint64 `json:"epoch"`
	Version uint64 `json:"version"`
}

// Roles of a server's copy of a session.
const (
	SessionOwner      = "owner"
	SessionBackupCopy = "copy"
)
