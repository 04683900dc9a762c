package replication

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"tandem/backend/domain"
	"tandem/backend/session"
	"tandem/backend/wire"
)

// fuzzNode is a node ms2 of a three-member cluster whose peers are not
// running (their addresses refuse connections), without background loops.
func fuzzNode(tb testing.TB) *Node {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	n := New(Config{Name: "ms2", Token: "tok"})
	n.runCtx = ctx
	members := []wire.Member{
		{Name: "ms1", Route: "ms1", Listen: "127.0.0.1:1"},
		{Name: "ms2", Route: "ms2", Listen: "127.0.0.1:2"},
		{Name: "ms3", Route: "ms3", Listen: "127.0.0.1:3"},
	}
	sc := wire.ServerConfig{Self: members[1], Members: members, Session: domain.DefaultSessionConfig(),
		Cluster: wire.ClusterSettings{Name: "c", FailoverMode: domain.FailoverImmediate, BackupPolicy: domain.BackupRing, HeartbeatIntervalMS: 100, HeartbeatTimeoutMS: 1000}}
	if err := n.Apply(sc); err != nil {
		tb.Fatal(err)
	}
	return n
}

var fuzzPaths = []string{PathHeartbeat, PathRecords, PathLocate, PathRelinquish}

// FuzzPeerEndpoints sends arbitrary bodies to every internal peer
// endpoint of a real node, authenticated as a peer would be. Nothing may
// panic or answer 5xx, and whatever a body does, the node's own view of
// the cluster stays well formed.
func FuzzPeerEndpoints(f *testing.F) {
	id := "0123456789abcdef0123456789abcdef"
	put := &Batch{From: "ms1", Inc: "inc1", Items: []Item{{Op: opPut, Rec: &session.Record{ID: id, Home: "ms1", Owner: "ms1", Backup: "ms2", Epoch: 1, Version: 1,
		Attrs: map[string]session.Value{"count": {Kind: session.KindInt, I: 1}}}}}}
	hand := &Batch{From: "ms1", Inc: "inc1", Items: []Item{{Op: opPut, Rec: &session.Record{ID: id, Home: "ms1", Owner: "ms2", Backup: "ms3", Epoch: 2, Version: 1,
		Attrs: map[string]session.Value{}}}}}
	drop := &Batch{From: "ms3", Inc: "inc3", Items: []Item{{Op: opDrop, Rec: &session.Record{ID: id, Owner: "ms3", Epoch: 9, Attrs: map[string]session.Value{}}}}}
	for _, seed := range []struct {
		path uint8
		body []byte
	}{
		{0, []byte(`{"from":"ms1","inc":"inc1","backup":"ms2","fence_ack":0}`)},
		{0, []byte(`{"from":"ms2","inc":"x"}`)},
		{0, []byte(`{"from":"ms1","inc":"inc1","backup":"nobody"}`)},
		{0, []byte(`{"from":"ms1","inc":"` + string(bytes.Repeat([]byte("a"), 65)) + `"}`)},
		{1, put.Encode(nil)},
		{1, hand.Encode(nil)},
		{1, drop.Encode(nil)},
		{1, append(put.Encode(nil), 0)},
		{2, []byte(`{"from":"ms1","id":"` + id + `"}`)},
		{2, []byte(`{"from":"ms1","id":"../../etc/passwd"}`)},
		{3, []byte(`{"from":"ms3","id":"` + id + `"}`)},
		{3, []byte(`{"from":"ms3","id":"` + id + `","extra":1}`)},
		{3, []byte(`null`)},
		{1, nil},
	} {
		f.Add(seed.path, seed.body)
	}
	n := fuzzNode(f)
	h := n.Handler()
	f.Fuzz(func(t *testing.T, path uint8, body []byte) {
		p := fuzzPaths[int(path)%len(fuzzPaths)]
		req := httptest.NewRequest(http.MethodPost, p, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s answered %d to %q: %s", p, w.Code, body, w.Body.Bytes())
		}
		st := n.Status()
		if st.Sessions < 0 || st.BackupSessions < 0 || st.Unprotected < 0 || st.Unprotected > st.Sessions {
			t.Fatalf("status after %s %q: %+v", p, body, st)
		}
		if st.Backup != "" && st.Backup != "ms1" && st.Backup != "ms3" {
			t.Fatalf("backup %q is not a peer", st.Backup)
		}
	})
}
