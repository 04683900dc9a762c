package domain_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"testing"

	"tandem/backend/domain"
)

// asciiName reports whether s uses only what a resource name may hold, so
// no look-alike, direction mark, NUL or newline slips through validation.
func asciiName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return s != "" && s[0] != '-' && len(s) <= 63
}

// FuzzServerValidate: whatever a client sends as a server definition,
// validation never panics, and what it accepts is plain ASCII names and
// routes and a listen address that really is host:port with a port in
// 1..65535.
func FuzzServerValidate(f *testing.F) {
	for _, s := range [][4]string{
		{"ms1", "c1", "127.0.0.1:9741", ""},
		{"ms1\n", "c1", "127.0.0.1:9741", ""},
		{"\u04411", "c1", "[::1]:80", "r"},
		{"ms1", "c1", "localhost:065535", ""},
		{"ms1", "c1", "exa\u200bmple.com:80", ""},
		{"a", "b", ":1", "-"},
		{"ms1", "c1", "127.0.0.1:9741\x00", "ms1"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, name, cluster, listen, rt string) {
		s := domain.Server{Name: name, Cluster: cluster, Listen: listen, Route: rt}
		s.ApplyDefaults()
		if err := s.Validate(); err != nil {
			return
		}
		if !asciiName(s.Name) || !asciiName(s.Cluster) || !asciiName(s.Route) || len(s.Route) > 16 {
			t.Fatalf("accepted %+v", s)
		}
		host, port, err := net.SplitHostPort(s.Listen)
		p, perr := strconv.Atoi(port)
		if err != nil || perr != nil || p < 1 || p > 65535 || bytes.ContainsAny([]byte(host), "\x00\r\n /\\") {
			t.Fatalf("accepted listen %q", s.Listen)
		}
	})
}

// FuzzClusterValidate: an accepted cluster has a plain name, a known
// failover mode and backup policy, and heartbeat settings that can work
// (the timeout at least twice the interval).
func FuzzClusterValidate(f *testing.F) {
	f.Add([]byte(`{"name":"c1","heartbeat_interval_ms":200,"heartbeat_timeout_ms":1000}`))
	f.Add([]byte(`{"name":"c1","failover_mode":"verify","backup_policy":"explicit"}`))
	f.Add([]byte(`{"name":"c1","heartbeat_interval_ms":-1,"heartbeat_timeout_ms":9223372036854775807}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c domain.Cluster
		if err := json.Unmarshal(data, &c); err != nil {
			return
		}
		c.ApplyDefaults()
		if err := c.Validate(); err != nil {
			return
		}
		if !asciiName(c.Name) || c.HeartbeatIntervalMS <= 0 || c.HeartbeatTimeoutMS < 2*c.HeartbeatIntervalMS {
			t.Fatalf("accepted %+v", c)
		}
		if c.FailoverMode != domain.FailoverImmediate && c.FailoverMode != domain.FailoverVerify {
			t.Fatalf("accepted failover mode %q", c.FailoverMode)
		}
	})
}

// FuzzSessionOverride: an override that validates, merged over the
// defaults, gives an effective configuration that validates too (but for
// the one rule across levels: SameSite None needs Secure), with a
// checksum that survives a JSON round trip. Cookie attributes that pass
// can never split a Set-Cookie header.
func FuzzSessionOverride(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"shared":false,"timeout_seconds":60,"max_sessions":0}`,
		`{"cookie":{"name":"APPSESSION","domain":".example.com","path":"/app","secure":true,"same_site":"None"}}`,
		`{"cookie":{"same_site":"None"}}`,
		`{"cookie":{"path":"/a\r\nSet-Cookie: x=y"}}`,
		`{"cookie":{"name":"JSESS\u0406ONID"}}`,
		`{"replication":"async","failback":false,"tracking_mode":"url"}`,
		`{"timeout_seconds":604801}`,
		`{"cookie":{"max_age_seconds":-1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var o domain.SessionOverride
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&o); err != nil {
			return
		}
		if err := o.Validate(); err != nil {
			return
		}
		eff := domain.Merge(domain.DefaultSessionConfig(), o)
		if err := eff.Validate(); err != nil {
			// Only a rule across inherited fields may fail here (SameSite
			// None needs Secure, which can come from another level); the
			// API checks the effective config too.
			var ie *domain.InvalidError
			if !errors.As(err, &ie) || ie.Field != "cookie.same_site" {
				t.Fatalf("override %s validates but the effective config does not: %v", data, err)
			}
			return
		}
		b, err := json.Marshal(eff)
		if err != nil {
			t.Fatal(err)
		}
		var back domain.SessionConfig
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if back.Checksum() != eff.Checksum() {
			t.Fatalf("checksum changes over a JSON round trip: %s", b)
		}
		ck := eff.Cookie
		for _, v := range []string{ck.Name, ck.Domain, ck.Path, ck.SameSite} {
			if bytes.ContainsAny([]byte(v), "\r\n\x00;") {
				t.Fatalf("cookie attribute %q accepted", v)
			}
		}
	})
}
