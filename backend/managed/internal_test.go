package managed_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"tandem/backend/domain"
	"tandem/backend/replication"
	"tandem/backend/route"
	"tandem/backend/session"
)

func postInternal(t *testing.T, addr, path, token string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return send(t, req)
}

// send sends req and returns the status and the body.
func send(t *testing.T, req *http.Request) (int, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestInternalEndpointsRejectBadInput: wrong or missing secret, garbage
// bodies, puts from a non-owner and stale versions are all rejected, and
// the session state of both servers is unchanged afterwards.
func TestInternalEndpointsRejectBadInput(t *testing.T) {
	c := newCluster(t, 2, domain.FailoverImmediate, domain.DefaultSessionConfig())
	c.startAll()
	cl := newClient(c, "JSESSIONID")
	ss := cl.create(t, "ms1", 3, 3)
	cl.step(t, ss, 3)
	cl.step(t, ss, 3) // count 3, version 3 on ms1 and its copy on ms2
	victim := ss[0]
	id, _ := route.Parse(victim.cookie)
	addr1, addr2 := c.member("ms1").PeerAddr(), c.member("ms2").PeerAddr()
	// The application port serves none of the peers' endpoints.
	for _, p := range []string{replication.PathRecords, replication.PathHeartbeat, replication.PathLocate, replication.PathRelinquish} {
		if code, _ := postInternal(t, c.member("ms1").Listen, p, testToken, []byte("{}")); code != http.StatusNotFound {
			t.Fatalf("application port: POST %s = %d, want 404", p, code)
		}
	}
	before1, _ := c.status("ms1")
	before2, _ := c.status("ms2")

	inc := map[string]string{"ms1": before1.Incarnation, "ms2": before2.Incarnation, "ms9": "x"}
	forged := func(from, owner string, epoch, version uint64, count int64) []byte {
		b := replication.Batch{From: from, Inc: inc[from], Items: []replication.Item{{Op: 1, Rec: &session.Record{
			ID: id.ID, Home: owner, Owner: owner, Epoch: epoch, Version: version,
			Attrs: map[string]session.Value{"count": {Kind: session.KindInt, I: count}}}}}}
		return b.Encode(nil)
	}
	hb, _ := json.Marshal(map[string]any{"from": "ms2", "inc": "x", "backup": "", "fence_ack": 0})
	cases := []struct {
		name   string
		addr   string
		path   string
		token  string
		body   []byte
		status int
		answer string // for 200: the status bytes
	}{
		{"no token", addr1, replication.PathRecords, "", forged("ms2", "ms2", 99, 99, 1000), 401, ""},
		{"wrong token", addr1, replication.PathRecords, "nope" + testToken, forged("ms2", "ms2", 99, 99, 1000), 401, ""},
		{"token prefix", addr1, replication.PathHeartbeat, testToken[:10], hb, 401, ""},
		{"garbage records", addr1, replication.PathRecords, testToken, []byte("\x00garbage\xff"), 400, ""},
		{"truncated records", addr1, replication.PathRecords, testToken, forged("ms2", "ms2", 99, 99, 1000)[:20], 400, ""},
		{"trailing bytes", addr1, replication.PathRecords, testToken, append(forged("ms2", "ms2", 99, 99, 1000), 0), 400, ""},
		{"unknown sender", addr1, replication.PathRecords, testToken, forged("ms9", "ms9", 99, 99, 1000), 400, ""},
		{"put for another owner", addr2, replication.PathRecords, testToken, forged("ms2", "ms1", 99, 99, 1000), 400, ""},
		{"stale epoch from a peer", addr1, replication.PathRecords, testToken, forged("ms2", "ms2", 0, 99, 1000), 400, ""},
		{"stale version from the owner", addr2, replication.PathRecords, testToken, forged("ms1", "ms1", 1, 2, 1000), 200, "s"},
		{"same epoch, another owner", addr1, replication.PathRecords, testToken, forged("ms2", "ms2", 1, 99, 1000), 200, "f"},
		{"garbage heartbeat", addr1, replication.PathHeartbeat, testToken, []byte("{"), 400, ""},
		{"heartbeat unknown field", addr1, replication.PathHeartbeat, testToken, []byte(`{"from":"ms2","inc":"x","backup":"","fence_ack":0,"evil":1}`), 400, ""},
		{"heartbeat from self", addr1, replication.PathHeartbeat, testToken, []byte(`{"from":"ms1","inc":"x","backup":"","fence_ack":0}`), 400, ""},
		{"locate bad id", addr1, replication.PathLocate, testToken, []byte(`{"from":"ms2","id":"../../etc"}`), 400, ""},
		{"relinquish no token", addr1, replication.PathRelinquish, "", []byte(fmt.Sprintf(`{"from":"ms2","id":%q}`, id.ID)), 401, ""},
		{"relinquish garbage", addr1, replication.PathRelinquish, testToken, []byte(`[]`), 400, ""},
	}
	for _, tc := range cases {
		code, body := postInternal(t, tc.addr, tc.path, tc.token, tc.body)
		if code != tc.status {
			t.Errorf("%s: status %d (%s), want %d", tc.name, code, strings.TrimSpace(string(body)), tc.status)
			continue
		}
		if tc.status == 200 && string(body) != tc.answer {
			t.Errorf("%s: answer %q, want %q", tc.name, body, tc.answer)
		}
		if tc.status != 200 && bytes.Contains(body, []byte(testToken)) {
			t.Errorf("%s: answer echoes the token", tc.name)
		}
	}
	after1, _ := c.status("ms1")
	after2, _ := c.status("ms2")
	if after1.Incarnation != before1.Incarnation || after2.Incarnation != before2.Incarnation ||
		after1.Sessions != before1.Sessions || after1.BackupSessions != before1.BackupSessions ||
		after2.Sessions != before2.Sessions || after2.BackupSessions != before2.BackupSessions {
		t.Fatalf("state changed: ms1 %+v -> %+v, ms2 %+v -> %+v", before1, after1, before2, after2)
	}
	// Forwards are served on the internal listener, to members only; on the
	// application port a forged forward mark is ignored: the request is
	// served from the session's real count (on the owner, or here if the
	// owner hands the session over), not refused as a forward would be.
	forwardTo := func(addr, bearer string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/counter", nil)
		req.AddCookie(&http.Cookie{Name: "JSESSIONID", Value: victim.cookie})
		req.Header.Set(session.HeaderForwarded, "1")
		if bearer != "" {
			req.Header.Set(session.HeaderPeerAuth, "Bearer "+bearer)
		}
		return send(t, req)
	}
	for _, bearer := range []string{"", "nope" + testToken} {
		if code, body := forwardTo(addr1, bearer); code != http.StatusUnauthorized || bytes.Contains(body, []byte(testToken)) {
			t.Fatalf("forward without the node token: %d %s", code, body)
		}
	}
	code, body := forwardTo(c.member("ms2").Listen, testToken)
	var out struct {
		Server string `json:"server"`
		Count  int64  `json:"count"`
	}
	if err := json.Unmarshal(body, &out); code != http.StatusOK || err != nil || out.Count != victim.count+1 {
		t.Fatalf("forged forward mark on ms2's application port: %d %s, want 200 with count %d", code, body, victim.count+1)
	}
	victim.count, victim.server = out.Count, out.Server
	// Every session, the victim included, goes on from its real count, on
	// its owner and (after a kill) from the untouched copy.
	cl.step(t, ss, 3)
	c.procs["ms1"].Kill()
	cl.degradedOK = true
	cl.step(t, ss, 3)
	if victim.count != 6 || victim.server != "ms2" {
		t.Fatalf("victim count %d on %s, want 6 on ms2", victim.count, victim.server)
	}
}
