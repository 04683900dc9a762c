package session

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tandem/backend/domain"
)

// sendAs sends GET / with the session cookie c, request id rid and, when
// resent, the web server's X-Tandem-Resent mark.
func sendAs(t *testing.T, url string, c *http.Cookie, rid string, resent bool) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/", nil)
	req.AddCookie(c)
	req.Header.Set(HeaderRequestID, rid)
	if resent {
		req.Header.Set(HeaderResent, "1")
	}
	return do(t, req)
}

// A write the web server resent (its first attempt was given up on) is
// applied once; the first attempt, arriving long after (it waited in a
// member cut off the network, which then forwarded it to the session's
// owner, and the web server's close of it never reached that member), is
// refused however many writes followed, not applied a second time. The
// same holds once a request id has been answered from the stored reply.
func TestStaleAttemptOfResentWriteIsNeverApplied(t *testing.T) {
	t.Parallel()
	srv, _ := newTestServer(t, domain.DefaultSessionConfig(), &clock{t: time.Unix(1e6, 0)})
	resp, body := get(t, srv.URL+"/")
	c := resp.Cookies()[0]
	id := strings.Fields(body)[0]
	count := 1
	write := func(rid string) {
		t.Helper()
		count++
		if r, b := sendAs(t, srv.URL, c, rid, false); r.StatusCode != http.StatusOK || !strings.HasPrefix(b, id+" "+strconv.Itoa(count)+" ") {
			t.Fatalf("write %s: %d %q, want count %d", rid, r.StatusCode, b, count)
		}
	}
	stale := func(rid string) {
		t.Helper()
		r, b := sendAs(t, srv.URL, c, rid, false)
		if r.StatusCode != http.StatusConflict || r.Header.Get(HeaderReplayed) != "superseded" {
			t.Fatalf("stale first attempt of %s: %d %q replayed=%q, want 409 superseded", rid, r.StatusCode, b, r.Header.Get(HeaderReplayed))
		}
	}

	// The resend is applied first.
	count++
	if r, b := sendAs(t, srv.URL, c, "resent-1", true); r.StatusCode != http.StatusOK || !strings.HasPrefix(b, id+" "+strconv.Itoa(count)+" ") {
		t.Fatalf("resend: %d %q, want count %d", r.StatusCode, b, count)
	}
	for i := range 3 * maxSeen {
		write(fmt.Sprintf("w1-%d", i))
	}
	stale("resent-1")

	// The first attempt is applied first (its answer lost), the resend is
	// answered from the stored reply; another attempt of it comes later.
	write("twice-2")
	if r, _ := sendAs(t, srv.URL, c, "twice-2", true); r.Header.Get(HeaderReplayed) != "1" {
		t.Fatalf("resend after the first attempt was applied: replayed=%q, want the stored reply", r.Header.Get(HeaderReplayed))
	}
	for i := range 3 * maxSeen {
		write(fmt.Sprintf("w2-%d", i))
	}
	stale("twice-2")

	// Nothing was applied by the refused attempts.
	write("last")
}

// movingStore is a MemStore whose commits find that the session moved to
// another owner meanwhile (its backup took it over): Commit answers a
// *ForwardError naming owner.
type movingStore struct {
	*MemStore
	owner string
}

type movedTxn struct {
	Txn
	owner string
}

func (s movingStore) Get(ctx context.Context, l Lookup) (Txn, error) {
	txn, err := s.MemStore.Get(ctx, l)
	if err != nil {
		return nil, err
	}
	return movedTxn{Txn: txn, owner: s.owner}, nil
}

func (t movedTxn) Commit(context.Context, bool) (Result, error) {
	t.Txn.Abort()
	return Result{}, &ForwardError{Server: "ms2", Addr: t.owner}
}

// A request whose commit finds the session taken over by another server
// is answered 503 (its sender resends it, with the same id) and never
// redone at the new owner: the owner's copy may hold this very write (an
// earlier try of the replication reached it), or the sender may have
// resent the request there long ago.
func TestMovedDuringRequestIsNotRedoneAtNewOwner(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		io.WriteString(w, "redone")
	}))
	t.Cleanup(owner.Close)
	ownerAddr := owner.Listener.Addr().(*net.TCPAddr).String()

	clk := &clock{t: time.Unix(1e6, 0)}
	cfg := domain.DefaultSessionConfig()
	mem := NewMemStore("ms1", time.Duration(cfg.TimeoutSeconds)*time.Second, clk.now)
	m := NewManager(cfg, movingStore{MemStore: mem, owner: ownerAddr}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(m.Wrap(counterApp()))
	t.Cleanup(srv.Close)

	resp, _ := get(t, srv.URL+"/") // a new session: New, not Get
	c := resp.Cookies()[0]
	r, b := sendAs(t, srv.URL, c, "moved-1", false)
	if r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("moved during the request: %d %q, want 503", r.StatusCode, b)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the request was redone at the new owner %d times", n)
	}
}
