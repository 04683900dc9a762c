package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
)

// Tracking modes.
const (
	TrackingCookie = "cookie"
	TrackingURL    = "url"
)

// Replication modes.
const (
	ReplicationSync  = "sync"
	ReplicationAsync = "async"
)

// Session timeout bounds: 1 minute to 7 days.
const (
	MinTimeoutSeconds = 60
	MaxTimeoutSeconds = 7 * 24 * 3600
)

// CookieConfig is the session cookie's attributes.
type CookieConfig struct {
	Name          string `json:"name"`
	Domain        string `json:"domain"`
	Path          string `json:"path"`
	Secure        bool   `json:"secure"`
	HTTPOnly      bool   `json:"http_only"`
	SameSite      string `json:"same_site"`
	MaxAgeSeconds int    `json:"max_age_seconds"` // 0: a browser-session cookie
}

// SessionConfig is an effective (fully resolved) session configuration.
type SessionConfig struct {
	Shared         bool         `json:"shared"`
	TrackingMode   string       `json:"tracking_mode"`
	Cookie         CookieConfig `json:"cookie"`
	TimeoutSeconds int          `json:"timeout_seconds"`
	MaxSessions    int          `json:"max_sessions"` // 0: no limit
	Replication    string       `json:"replication"`
	Failback       bool         `json:"failback"`
	// MaxSessionBytes bounds one session's attributes (keys and values);
	// a write that would pass it is refused and the session stays as it was.
	MaxSessionBytes int `json:"max_session_bytes"`
}

// Session size bounds: the default, and what an override may set.
const (
	DefaultMaxSessionBytes = 64 << 10
	MinMaxSessionBytes     = 1 << 10
	MaxMaxSessionBytes     = 1 << 20
)

// DefaultSessionConfig is what a cluster without overrides gets.
func DefaultSessionConfig() SessionConfig {
	return SessionConfig{
		Shared:       true,
		TrackingMode: TrackingCookie,
		Cookie: CookieConfig{
			Name:     "JSESSIONID",
			Path:     "/",
			HTTPOnly: true,
			SameSite: "Lax",
		},
		TimeoutSeconds:  1800,
		Replication:     ReplicationSync,
		Failback:        true,
		MaxSessionBytes: DefaultMaxSessionBytes,
	}
}

// CookieOverride holds cookie fields to override; nil means inherit.
type CookieOverride struct {
	Name          *string `json:"name,omitempty"`
	Domain        *string `json:"domain,omitempty"`
	Path          *string `json:"path,omitempty"`
	Secure        *bool   `json:"secure,omitempty"`
	HTTPOnly      *bool   `json:"http_only,omitempty"`
	SameSite      *string `json:"same_site,omitempty"`
	MaxAgeSeconds *int    `json:"max_age_seconds,omitempty"`
}

// SessionOverride is a partial session configuration (cluster defaults or a
// server's override); nil fields inherit from the level below.
type SessionOverride struct {
	Shared          *bool           `json:"shared,omitempty"`
	TrackingMode    *string         `json:"tracking_mode,omitempty"`
	Cookie          *CookieOverride `json:"cookie,omitempty"`
	TimeoutSeconds  *int            `json:"timeout_seconds,omitempty"`
	MaxSessions     *int            `json:"max_sessions,omitempty"`
	Replication     *string         `json:"replication,omitempty"`
	Failback        *bool           `json:"failback,omitempty"`
	MaxSessionBytes *int            `json:"max_session_bytes,omitempty"`
}

func set[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

// Merge returns base with every non-nil field of o applied.
func Merge(base SessionConfig, o SessionOverride) SessionConfig {
	out := base
	set(&out.Shared, o.Shared)
	set(&out.TrackingMode, o.TrackingMode)
	set(&out.TimeoutSeconds, o.TimeoutSeconds)
	set(&out.MaxSessions, o.MaxSessions)
	set(&out.Replication, o.Replication)
	set(&out.Failback, o.Failback)
	set(&out.MaxSessionBytes, o.MaxSessionBytes)
	if c := o.Cookie; c != nil {
		set(&out.Cookie.Name, c.Name)
		set(&out.Cookie.Domain, c.Domain)
		set(&out.Cookie.Path, c.Path)
		set(&out.Cookie.Secure, c.Secure)
		set(&out.Cookie.HTTPOnly, c.HTTPOnly)
		set(&out.Cookie.SameSite, c.SameSite)
		set(&out.Cookie.MaxAgeSeconds, c.MaxAgeSeconds)
	}
	return out
}

// Effective resolves a server's configuration: built-in defaults, then the
// cluster's defaults, then the server's override.
func Effective(cluster, server SessionOverride) SessionConfig {
	return Merge(Merge(DefaultSessionConfig(), cluster), server)
}

// IsEmpty reports whether the override sets nothing.
func (o SessionOverride) IsEmpty() bool {
	b, _ := json.Marshal(o)
	return string(b) == "{}" || string(b) == `{"cookie":{}}`
}

// Validate checks the fields the override sets, so a bad value is reported
// with its own field name even when the merged result would hide it.
func (o SessionOverride) Validate() error {
	probe := Merge(DefaultSessionConfig(), o)
	// Check each set field on its own; cross-field rules wait for the
	// effective config (SameSite=None may rely on an inherited Secure).
	if o.TrackingMode != nil {
		if err := probe.checkTracking(); err != nil {
			return err
		}
	}
	if o.Replication != nil {
		if err := probe.checkReplication(); err != nil {
			return err
		}
	}
	if o.TimeoutSeconds != nil {
		if err := probe.checkTimeout(); err != nil {
			return err
		}
	}
	if o.MaxSessions != nil && *o.MaxSessions < 0 {
		return Invalid("max_sessions", "must be 0 (no limit) or more")
	}
	if o.MaxSessionBytes != nil {
		if err := probe.checkSessionBytes(); err != nil {
			return err
		}
	}
	if c := o.Cookie; c != nil {
		if c.Name != nil && !ValidCookieName(*c.Name) {
			return Invalid("cookie.name", "must be an RFC 6265 token (visible ASCII, no separators such as ; , = or spaces)")
		}
		if c.Domain != nil && !ValidCookieDomain(*c.Domain) {
			return Invalid("cookie.domain", "must be empty or a domain name such as example.com")
		}
		if c.Path != nil {
			if err := probe.checkPath(); err != nil {
				return err
			}
		}
		if c.SameSite != nil {
			if err := probe.checkSameSite(); err != nil {
				return err
			}
		}
		if c.MaxAgeSeconds != nil && *c.MaxAgeSeconds < 0 {
			return Invalid("cookie.max_age_seconds", "must be 0 (browser session) or more")
		}
	}
	return nil
}

func (c SessionConfig) checkTracking() error {
	if c.TrackingMode != TrackingCookie && c.TrackingMode != TrackingURL {
		return Invalid("tracking_mode", "must be %q or %q", TrackingCookie, TrackingURL)
	}
	return nil
}

func (c SessionConfig) checkReplication() error {
	if c.Replication != ReplicationSync && c.Replication != ReplicationAsync {
		return Invalid("replication", "must be %q or %q", ReplicationSync, ReplicationAsync)
	}
	return nil
}

func (c SessionConfig) checkTimeout() error {
	if c.TimeoutSeconds < MinTimeoutSeconds || c.TimeoutSeconds > MaxTimeoutSeconds {
		return Invalid("timeout_seconds", "must be from %d (1 minute) to %d (7 days)", MinTimeoutSeconds, MaxTimeoutSeconds)
	}
	return nil
}

func (c SessionConfig) checkSessionBytes() error {
	if c.MaxSessionBytes < MinMaxSessionBytes || c.MaxSessionBytes > MaxMaxSessionBytes {
		return Invalid("max_session_bytes", "must be from %d (1 KiB) to %d (1 MiB)", MinMaxSessionBytes, MaxMaxSessionBytes)
	}
	return nil
}

func (c SessionConfig) checkPath() error {
	p := c.Cookie.Path
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, ";\x00\r\n") || len(p) > 1024 {
		return Invalid("cookie.path", "must start with / and contain no ; or control characters")
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] >= 0x7f {
			return Invalid("cookie.path", "must start with / and contain no ; or control characters")
		}
	}
	return nil
}

func (c SessionConfig) checkSameSite() error {
	switch c.Cookie.SameSite {
	case "Lax", "Strict", "None":
		return nil
	}
	return Invalid("cookie.same_site", "must be Lax, Strict or None")
}

// Validate checks an effective configuration, cross-field rules included.
func (c SessionConfig) Validate() error {
	for _, check := range []func() error{c.checkTracking, c.checkReplication, c.checkTimeout, c.checkSessionBytes, c.checkPath, c.checkSameSite} {
		if err := check(); err != nil {
			return err
		}
	}
	if !ValidCookieName(c.Cookie.Name) {
		return Invalid("cookie.name", "must be an RFC 6265 token")
	}
	if !ValidCookieDomain(c.Cookie.Domain) {
		return Invalid("cookie.domain", "must be empty or a domain name such as example.com")
	}
	if c.Cookie.SameSite == "None" && !c.Cookie.Secure {
		return Invalid("cookie.same_site", "None requires secure: true (browsers reject it otherwise)")
	}
	if c.MaxSessions < 0 {
		return Invalid("max_sessions", "must be 0 (no limit) or more")
	}
	if c.Cookie.MaxAgeSeconds < 0 {
		return Invalid("cookie.max_age_seconds", "must be 0 (browser session) or more")
	}
	return nil
}

// Checksum is a stable hash of the configuration (hex SHA-256 of its JSON).
func (c SessionConfig) Checksum() string {
	b, _ := json.Marshal(c) // struct of plain fields: cannot fail, field order fixed
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
