package session

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"tandem/backend/domain"
)

// A retried request (same X-Tandem-Request-Id) is answered with the reply
// of its first application, not applied twice; a new id applies again.
func TestRetryWithSameRequestIDIsNotAppliedTwice(t *testing.T) {
	t.Parallel()
	srv, _ := newTestServer(t, domain.DefaultSessionConfig(), &clock{t: time.Unix(1e6, 0)})
	resp, body := get(t, srv.URL+"/")
	c := resp.Cookies()[0]
	id := strings.Fields(body)[0]

	send := func(rid string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		req.AddCookie(c)
		if rid != "" {
			req.Header.Set(HeaderRequestID, rid)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		buf := make([]byte, 512)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		resp.Body.Close()
		return resp, b.String()
	}
	r1, b1 := send("req-1")
	if !strings.HasPrefix(b1, id+" 2 ") || r1.Header.Get(HeaderReplayed) != "" {
		t.Fatalf("first application: %q (replayed=%q)", b1, r1.Header.Get(HeaderReplayed))
	}
	r2, b2 := send("req-1")
	if b2 != b1 || r2.Header.Get(HeaderReplayed) != "1" || r2.StatusCode != r1.StatusCode {
		t.Fatalf("retry: got %d %q replayed=%q, want the stored %q", r2.StatusCode, b2, r2.Header.Get(HeaderReplayed), b1)
	}
	_, b3 := send("req-2")
	if !strings.HasPrefix(b3, id+" 3 ") {
		t.Fatalf("new request id: %q, want count 3", b3)
	}
	_, b4 := send("")
	if !strings.HasPrefix(b4, id+" 4 ") {
		t.Fatalf("no request id: %q, want count 4", b4)
	}
}

func TestReservedAttributesHidden(t *testing.T) {
	t.Parallel()
	s := &Session{rec: &Record{Attrs: map[string]Value{"a": {Kind: KindInt, I: 1}, replyKey: {Kind: KindBytes, S: "x"}}}}
	if keys := s.Keys(); len(keys) != 1 || keys[0] != "a" {
		t.Fatalf("Keys() = %v", keys)
	}
}
