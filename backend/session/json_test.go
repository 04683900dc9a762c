package session

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"tandem/backend/domain"
)

func TestParsePatch(t *testing.T) {
	t.Parallel()
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	cases := []struct {
		name, header string
		ok           bool
	}{
		{"object", enc(`{"a":1,"b":{"c":[true,null]},"d":null}`), true},
		{"padded base64url", base64.URLEncoding.EncodeToString([]byte(`{"a":"xy"}`)), true},
		{"empty object", enc(`{}`), true},
		{"not base64", "%%%", false},
		{"array", enc(`[1,2]`), false},
		{"null", enc(`null`), false},
		{"trailing data", enc(`{"a":1} {}`), false},
		{"bad json", enc(`{"a":}`), false},
		{"reserved name", enc(`{"_tandem.reply":"x"}`), false},
		{"empty name", enc(`{"":1}`), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := DecodePatchHeader(c.header)
			if (err == nil) != c.ok {
				t.Fatalf("DecodePatchHeader(%q): %v, want ok=%v", c.header, err, c.ok)
			}
			if err != nil && !errors.Is(err, ErrBadPatch) {
				t.Fatalf("error %v is not ErrBadPatch", err)
			}
		})
	}
}

// A patch is applied whole or not at all: over max_session_bytes, nothing
// changes; null deletes; every kind reads back as JSON.
func TestApplyPatchAllOrNothing(t *testing.T) {
	t.Parallel()
	s := &Session{rec: &Record{Attrs: map[string]Value{
		"n": {Kind: KindInt, I: 7}, "s": {Kind: KindString, S: "hi"}, "_tandem.reply": {Kind: KindBytes, S: strings.Repeat("r", 500)},
	}}, max: 100}
	if got := string(s.AttributesJSON()); got != `{"n":7,"s":"hi"}` {
		t.Fatalf("AttributesJSON = %s", got)
	}
	if err := s.ApplyPatch(map[string]json.RawMessage{"a": json.RawMessage(`{ "x" : [1, 2] }`), "n": json.RawMessage("null")}); err != nil {
		t.Fatal(err)
	}
	if got := string(s.AttributesJSON()); got != `{"a":{"x":[1,2]},"s":"hi"}` {
		t.Fatalf("after patch: %s", got)
	}
	before := string(s.AttributesJSON())
	err := s.ApplyPatch(map[string]json.RawMessage{"s": json.RawMessage(`"` + strings.Repeat("y", 120) + `"`), "z": json.RawMessage("1")})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized patch: %v, want ErrTooLarge", err)
	}
	if got := string(s.AttributesJSON()); got != before {
		t.Fatalf("a refused patch changed the session: %s, was %s", got, before)
	}
	if !s.changed {
		t.Fatal("the applied patch did not mark the session changed")
	}
}

// An answer that flushes streams: the session is stored at the flush, the
// client gets the first part before the handler ends, and a change after
// it is not kept.
func TestStreamingAnswerCommitsAtFlush(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1e6, 0)}
	st := NewMemStore("ms1", time.Hour, c.now)
	m := NewManager(domain.DefaultSessionConfig(), st, discard())
	release := make(chan struct{})
	var afterErr error
	srv := httptest.NewServer(m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		if r.URL.Path == "/read" {
			_, _ = w.Write(s.AttributesJSON())
			return
		}
		_ = s.ApplyPatch(map[string]json.RawMessage{"before": json.RawMessage("1")})
		_, _ = w.Write([]byte("first\n"))
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush: %v", err)
		}
		<-release
		afterErr = s.ApplyPatch(map[string]json.RawMessage{"after": json.RawMessage("1")})
		_, _ = w.Write([]byte("second\n"))
	})))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	cookie := resp.Cookies()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first\n" {
		t.Fatalf("first part before the handler ended: %q %v", buf, err)
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(rest) != "second\n" || len(cookie) != 1 {
		t.Fatalf("rest %q, cookies %v", rest, cookie)
	}
	if !errors.Is(afterErr, ErrCommitted) {
		t.Fatalf("a change after the flush: %v, want ErrCommitted", afterErr)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/read", nil)
	req.AddCookie(cookie[0])
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != `{"before":1}` {
		t.Fatalf("stored session %s, want only the change before the flush", got)
	}
}

// Over max_session_bytes at the end of a request: 502, session unchanged.
func TestOversizedSessionRefused(t *testing.T) {
	t.Parallel()
	cfg := domain.DefaultSessionConfig()
	cfg.MaxSessionBytes = 1024
	c := &clock{t: time.Unix(1e6, 0)}
	st := NewMemStore("ms1", time.Hour, c.now)
	m := NewManager(cfg, st, discard())
	srv := httptest.NewServer(m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		switch r.URL.Path {
		case "/big":
			s.SetString("blob", strings.Repeat("x", 2000)) // the typed setters are checked at the end
		case "/small":
			s.SetString("small", "ok")
		}
		_, _ = w.Write(s.AttributesJSON())
	})))
	defer srv.Close()
	resp, _ := get(t, srv.URL+"/small")
	ck := resp.Cookies()[0]
	resp, body := get(t, srv.URL+"/big", ck)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "max_session_bytes") {
		t.Fatalf("oversized: %d %q", resp.StatusCode, body)
	}
	if _, body := get(t, srv.URL+"/read", ck); body != `{"small":"ok"}` {
		t.Fatalf("session after the refused write: %s", body)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
