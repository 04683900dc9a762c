package session

import (
	"fmt"
	"net/http"
	"strconv"
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
	// req-1 again, after later writes: its answer went out long ago (a
	// first attempt that was stuck in a paused server): refused, not applied.
	r5, b5 := send("req-1")
	if r5.StatusCode != http.StatusConflict || r5.Header.Get(HeaderReplayed) != "superseded" {
		t.Fatalf("superseded retry: %d %q replayed=%q, want 409", r5.StatusCode, b5, r5.Header.Get(HeaderReplayed))
	}
	_, b6 := send("req-6")
	if !strings.HasPrefix(b6, id+" 5 ") {
		t.Fatalf("after the refused retry: %q, want count 5 (nothing applied by it)", b6)
	}
	// Only the last maxSeen ids are kept.
	for i := range maxSeen {
		send(fmt.Sprintf("fill-%d", i))
	}
	if _, b := send("req-6"); !strings.HasPrefix(b, id+" "+strconv.Itoa(6+maxSeen)+" ") {
		t.Fatalf("an id older than the last %d writes applies again: %q", maxSeen, b)
	}
}

func TestReservedAttributesHidden(t *testing.T) {
	t.Parallel()
	s := &Session{rec: &Record{Attrs: map[string]Value{"a": {Kind: KindInt, I: 1}, replyKey: {Kind: KindBytes, S: "x"}}}}
	if keys := s.Keys(); len(keys) != 1 || keys[0] != "a" {
		t.Fatalf("Keys() = %v", keys)
	}
}
