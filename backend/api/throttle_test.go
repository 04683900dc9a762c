package api_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"tandem/backend/api"
	"tandem/backend/domain"
	"tandem/backend/testenv"
)

// TestLoginThrottled: 20 wrong passwords in a row: the first 5 are
// checked (401), then the user and the address are locked (429 with
// Retry-After, the password not even checked, the right one refused too);
// the lockout is audited and recorded as an event; after the delay the
// right password logs in and clears the count.
func TestLoginThrottled(t *testing.T) {
	var (
		mu     sync.Mutex
		events []domain.Event
	)
	e := newEnv(t, func(c *api.Config) {
		c.Auth.OnLockout(func(_ context.Context, ev domain.Event) {
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		})
	})
	b := newBrowser(t, e)
	codes := map[int]int{}
	for i := range 20 {
		r := b.do("POST", "/api/v1/login", `{"name":"admin","password":"wrong password `+strconv.Itoa(i)+`"}`)
		codes[r.Status]++
		if r.Status == 429 {
			if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 {
				t.Fatalf("429 without a usable Retry-After: %q", r.Header.Get("Retry-After"))
			}
			if got := r.err(t).Code; got != api.CodeThrottled {
				t.Fatalf("429 code %q", got)
			}
		}
	}
	if codes[401] != 5 || codes[429] != 15 {
		t.Fatalf("20 wrong passwords: %v, want 5x401 then 15x429", codes)
	}
	// Locked: the right password is refused too, and so is another user
	// from the same address.
	if r := b.do("POST", "/api/v1/login", `{"name":"admin","password":"`+adminToken+`"}`); r.Status != 429 {
		t.Fatalf("right password while locked: %d", r.Status)
	}
	if r := b.do("POST", "/api/v1/login", `{"name":"someone","password":"whatever12"}`); r.Status != 429 {
		t.Fatalf("another user from the locked address: %d", r.Status)
	}
	// Audited and recorded.
	var audit []domain.AuditEntry
	e.must(200, "GET", "/api/v1/audit", adminToken, nil).decode(t, &audit)
	locked := 0
	for _, a := range audit {
		if a.Action == "login.locked" {
			locked++
		}
	}
	if locked < 2 { // the user and the address
		t.Fatalf("audit has %d login.locked entries, want the user's and the address's: %+v", locked, audit)
	}
	mu.Lock()
	if len(events) < 2 || events[0].Type != domain.EventLoginLocked {
		t.Fatalf("events %+v", events)
	}
	mu.Unlock()
	// After the delay, the right password logs in.
	testenv.Eventually(t, 30*time.Second, func() error {
		r := b.do("POST", "/api/v1/login", `{"name":"admin","password":"`+adminToken+`"}`)
		if r.Status != 200 {
			return fmt.Errorf("login: %d", r.Status)
		}
		return nil
	})
	// The count starts again: one more wrong password is a plain 401.
	if r := b.do("POST", "/api/v1/login", `{"name":"admin","password":"wrong again"}`); r.Status != 401 {
		t.Fatalf("wrong password after a good login: %d", r.Status)
	}
}

// TestTokenExpiry: a token created with expires_at works until then and is
// refused (401) after; an expiry in the past is refused (422) and creates
// nothing.
func TestTokenExpiry(t *testing.T) {
	e := newEnv(t)
	var bad api.ErrorBody
	r := e.do("POST", "/api/v1/tokens", adminToken, map[string]any{"name": "old", "role": "viewer", "expires_at": time.Now().Add(-time.Hour).Format(time.RFC3339)})
	if r.Status != 422 {
		t.Fatalf("expiry in the past: %d %s", r.Status, r.Body)
	}
	r.decode(t, &bad)
	if bad.Error.Field != "expires_at" {
		t.Fatalf("error %+v", bad)
	}
	var nt api.NewToken
	e.must(201, "POST", "/api/v1/tokens", adminToken, map[string]any{"name": "short", "role": "viewer", "expires_at": time.Now().Add(2 * time.Second).Format(time.RFC3339)}).decode(t, &nt)
	if nt.ExpiresAt == nil {
		t.Fatalf("created token without its expiry: %+v", nt)
	}
	e.must(200, "GET", "/api/v1/clusters", nt.Secret, nil)
	testenv.Eventually(t, 30*time.Second, func() error {
		if r := e.do("GET", "/api/v1/clusters", nt.Secret, nil); r.Status != 401 {
			return fmt.Errorf("expired token: %d", r.Status)
		}
		return nil
	})
	var ts []domain.Token
	e.must(200, "GET", "/api/v1/tokens", adminToken, nil).decode(t, &ts)
	for _, tk := range ts {
		if tk.Name == "old" {
			t.Fatal("the refused token was created")
		}
	}
}
