package domain

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func ptr[T any](v T) *T { return &v }

func TestEffective(t *testing.T) {
	t.Parallel()
	def := DefaultSessionConfig()
	tests := []struct {
		name            string
		cluster, server SessionOverride
		want            func(c *SessionConfig)
	}{
		{"nothing set", SessionOverride{}, SessionOverride{}, func(*SessionConfig) {}},
		{"cluster sets timeout", SessionOverride{TimeoutSeconds: ptr(600)}, SessionOverride{}, func(c *SessionConfig) { c.TimeoutSeconds = 600 }},
		{"server beats cluster", SessionOverride{TimeoutSeconds: ptr(600)}, SessionOverride{TimeoutSeconds: ptr(900)}, func(c *SessionConfig) { c.TimeoutSeconds = 900 }},
		{"cookie fields merge one by one",
			SessionOverride{Cookie: &CookieOverride{Name: ptr("SID"), Secure: ptr(true)}},
			SessionOverride{Cookie: &CookieOverride{Path: ptr("/app")}},
			func(c *SessionConfig) { c.Cookie.Name, c.Cookie.Secure, c.Cookie.Path = "SID", true, "/app" }},
		{"false overrides true", SessionOverride{}, SessionOverride{Shared: ptr(false), Failback: ptr(false)},
			func(c *SessionConfig) { c.Shared, c.Failback = false, false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := def
			tt.want(&want)
			if diff := cmp.Diff(want, Effective(tt.cluster, tt.server)); diff != "" {
				t.Fatalf("Effective (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOverrideValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		o     SessionOverride
		field string
	}{
		{"ok", SessionOverride{TimeoutSeconds: ptr(60)}, ""},
		{"timeout low", SessionOverride{TimeoutSeconds: ptr(59)}, "timeout_seconds"},
		{"timeout high", SessionOverride{TimeoutSeconds: ptr(7*24*3600 + 1)}, "timeout_seconds"},
		{"max sessions negative", SessionOverride{MaxSessions: ptr(-1)}, "max_sessions"},
		{"tracking", SessionOverride{TrackingMode: ptr("header")}, "tracking_mode"},
		{"replication", SessionOverride{Replication: ptr("quorum")}, "replication"},
		{"cookie name", SessionOverride{Cookie: &CookieOverride{Name: ptr("a b")}}, "cookie.name"},
		{"cookie name separator", SessionOverride{Cookie: &CookieOverride{Name: ptr("a=b")}}, "cookie.name"},
		{"cookie domain", SessionOverride{Cookie: &CookieOverride{Domain: ptr("bad domain!")}}, "cookie.domain"},
		{"cookie domain ip", SessionOverride{Cookie: &CookieOverride{Domain: ptr("10.0.0.1")}}, "cookie.domain"},
		{"cookie domain ok", SessionOverride{Cookie: &CookieOverride{Domain: ptr(".example.com")}}, ""},
		{"path", SessionOverride{Cookie: &CookieOverride{Path: ptr("app")}}, "cookie.path"},
		{"same site", SessionOverride{Cookie: &CookieOverride{SameSite: ptr("lax")}}, "cookie.same_site"},
		{"max age", SessionOverride{Cookie: &CookieOverride{MaxAgeSeconds: ptr(-5)}}, "cookie.max_age_seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.o.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("unexpected %v", err)
				}
				return
			}
			var inv *InvalidError
			if !errors.As(err, &inv) || inv.Field != tt.field {
				t.Fatalf("got %v, want invalid %s", err, tt.field)
			}
		})
	}
}

func TestSameSiteNoneNeedsSecure(t *testing.T) {
	t.Parallel()
	c := Effective(SessionOverride{}, SessionOverride{Cookie: &CookieOverride{SameSite: ptr("None")}})
	var inv *InvalidError
	if err := c.Validate(); !errors.As(err, &inv) || inv.Field != "cookie.same_site" {
		t.Fatalf("got %v", err)
	}
	c.Cookie.Secure = true
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidators(t *testing.T) {
	t.Parallel()
	for s, ok := range map[string]bool{"ms1": true, "a": true, "-a": false, "A": false, "": false, "a_b": false, "../x": false, "ms1;drop": false} {
		if ValidName(s) != ok {
			t.Errorf("ValidName(%q) != %v", s, ok)
		}
	}
	for s, ok := range map[string]bool{"127.0.0.1:80": true, "localhost:9741": true, ":8080": true, "h:0": false, "h:65536": false, "h": false, "h:x": false, "h:+80": false, "bad host:80": false} {
		if (CheckListen("listen", s) == nil) != ok {
			t.Errorf("CheckListen(%q) ok != %v", s, ok)
		}
	}
}
