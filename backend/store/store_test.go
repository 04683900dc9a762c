package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tandem/backend/domain"
	"tandem/backend/store"
	"tandem/backend/wire"
)

func open(t *testing.T, path string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newStore(t *testing.T) *store.Store {
	return open(t, filepath.Join(t.TempDir(), "tandem.db"))
}

func ptr[T any](v T) *T { return &v }

// seed creates node manager nm1, cluster c1 and servers ms1, ms2.
func seed(t *testing.T, s *store.Store) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.CreateNodeManager(ctx, "test", domain.NodeManager{Name: "nm1", Listen: "127.0.0.1:9740"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateCluster(ctx, "test", domain.Cluster{Name: "c1"}); err != nil {
		t.Fatal(err)
	}
	for i, n := range []string{"ms1", "ms2"} {
		if _, err := s.CreateServer(ctx, "test", domain.Server{Name: n, Cluster: "c1", Listen: fmt.Sprintf("127.0.0.1:%d", 9741+i), NodeManager: "nm1"}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCRUDAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tandem.db")
	ctx := context.Background()
	s := open(t, path)
	seed(t, s)
	if _, err := s.CreateWebServer(ctx, "test", domain.WebServer{Name: "web1", Cluster: "c1", Listen: "127.0.0.1:8080", NodeManager: "nm1"}); err != nil {
		t.Fatal(err)
	}
	c, err := s.Cluster(ctx, "c1")
	if err != nil || c.FailoverMode != domain.FailoverImmediate || c.HeartbeatIntervalMS != domain.DefaultHeartbeatIntervalMS {
		t.Fatalf("cluster = %+v, %v", c, err)
	}
	c.FailoverMode = domain.FailoverVerify
	if _, err := s.UpdateCluster(ctx, "test", c); err != nil {
		t.Fatal(err)
	}
	sv, err := s.Server(ctx, "ms1")
	if err != nil || sv.Route != "ms1" || sv.NodeManager != "nm1" {
		t.Fatalf("server = %+v, %v", sv, err)
	}
	before, err := s.DumpRows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s2 := open(t, path)
	after, err := s2.DumpRows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(before, after); d != "" {
		t.Fatalf("reopened database differs (-before +after):\n%s", d)
	}
	c2, err := s2.Cluster(ctx, "c1")
	if err != nil || c2.FailoverMode != domain.FailoverVerify {
		t.Fatalf("after reopen: %+v, %v", c2, err)
	}
	servers, err := s2.Servers(ctx, "c1")
	if err != nil || len(servers) != 2 {
		t.Fatalf("servers = %v, %v", servers, err)
	}
	if err := s2.DeleteWebServer(ctx, "test", "web1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.WebServer(ctx, "web1"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("deleted webserver: %v", err)
	}
}

func TestConflictsAndReferences(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	seed(t, s)
	var ce *domain.ConflictError
	_, err := s.CreateCluster(ctx, "t", domain.Cluster{Name: "c1"})
	if !errors.As(err, &ce) || ce.Field != "name" {
		t.Fatalf("duplicate cluster: %v", err)
	}
	_, err = s.CreateServer(ctx, "t", domain.Server{Name: "ms3", Cluster: "c1", Listen: "127.0.0.1:1", Route: "ms1"})
	if !errors.As(err, &ce) || ce.Field != "route" {
		t.Fatalf("duplicate route: %v", err)
	}
	if err := s.DeleteCluster(ctx, "t", "c1"); !errors.As(err, &ce) {
		t.Fatalf("delete cluster with servers: %v", err)
	}
	if err := s.DeleteNodeManager(ctx, "t", "nm1"); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("delete used node manager: %v", err)
	}
	var inv *domain.InvalidError
	_, err = s.CreateServer(ctx, "t", domain.Server{Name: "ms3", Cluster: "c1", Listen: "127.0.0.1:1", NodeManager: "nope"})
	if !errors.As(err, &inv) || inv.Field != "node_manager" {
		t.Fatalf("unknown node manager: %v", err)
	}
	_, err = s.CreateServer(ctx, "t", domain.Server{Name: "ms3", Cluster: "nope", Listen: "127.0.0.1:1"})
	if !errors.As(err, &inv) || inv.Field != "cluster" {
		t.Fatalf("unknown cluster: %v", err)
	}
	if _, err := s.CreateCluster(ctx, "t", domain.Cluster{Name: "c2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateServer(ctx, "t", domain.Server{Name: "other", Cluster: "c2", Listen: "127.0.0.1:2"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.CreateServer(ctx, "t", domain.Server{Name: "ms3", Cluster: "c1", Listen: "127.0.0.1:1", Backup: "other"})
	if !errors.As(err, &inv) || inv.Field != "backup" {
		t.Fatalf("backup in other cluster: %v", err)
	}
	if _, err := s.CreateServer(ctx, "t", domain.Server{Name: "ms3", Cluster: "c1", Listen: "127.0.0.1:1", Backup: "ms1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteServer(ctx, "t", "ms1"); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("delete a backup in use: %v", err)
	}
	var nf *domain.NotFoundError
	if _, err := s.Server(ctx, "zzz"); !errors.As(err, &nf) || nf.Kind != "server" {
		t.Fatalf("unknown server: %v", err)
	}
	if err := s.DeleteServer(ctx, "t", "zzz"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("delete unknown server: %v", err)
	}
}

func TestRejectedWriteChangesNothing(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	seed(t, s)
	before, err := s.DumpRows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A server override that makes the effective config invalid, a cluster
	// default that breaks a server's effective config, an InTx that fails
	// after writing: none may leave a trace.
	if _, err := s.SetServerSessionOverride(ctx, "t", "ms1", domain.SessionOverride{Cookie: &domain.CookieOverride{SameSite: ptr("None")}}); err == nil {
		t.Fatal("SameSite=None without Secure accepted")
	}
	if _, err := s.SetClusterSessionDefaults(ctx, "t", "c1", domain.SessionOverride{Cookie: &domain.CookieOverride{Secure: ptr(true)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetServerSessionOverride(ctx, "t", "ms1", domain.SessionOverride{Cookie: &domain.CookieOverride{SameSite: ptr("None")}}); err != nil {
		t.Fatal(err)
	}
	mid, _ := s.DumpRows(ctx)
	// Dropping the cluster's secure default breaks ms1 (SameSite=None).
	_, err = s.SetClusterSessionDefaults(ctx, "t", "c1", domain.SessionOverride{TimeoutSeconds: ptr(600)})
	var inv *domain.InvalidError
	if !errors.As(err, &inv) || inv.Field != "cookie.same_site" {
		t.Fatalf("cluster default breaking ms1: %v", err)
	}
	sentinel := errors.New("boom")
	err = s.InTx(ctx, func(tx *store.Store) error {
		if _, err := tx.CreateCluster(ctx, "t", domain.Cluster{Name: "c9"}); err != nil {
			return err
		}
		return sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Fatalf("InTx: %v", err)
	}
	after, _ := s.DumpRows(ctx)
	if d := cmp.Diff(mid, after); d != "" {
		t.Fatalf("rejected writes changed rows:\n%s", d)
	}
	if cmp.Equal(before, mid) {
		t.Fatal("the accepted write changed nothing")
	}
}

func TestRevisionsAndRollback(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	seed(t, s)
	revs, err := s.Revisions(ctx, "ms1")
	if err != nil || len(revs) != 1 || revs[0].Number != 1 || revs[0].Config != domain.DefaultSessionConfig() {
		t.Fatalf("initial revisions: %+v, %v", revs, err)
	}
	r1 := revs[0]
	// Cluster defaults change: a revision for each server of the cluster.
	if _, err := s.SetClusterSessionDefaults(ctx, "alice", "c1", domain.SessionOverride{TimeoutSeconds: ptr(600)}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"ms1", "ms2"} {
		revs, _ := s.Revisions(ctx, n)
		if len(revs) != 2 || revs[0].Config.TimeoutSeconds != 600 || revs[0].Actor != "alice" || revs[0].Checksum != revs[0].Config.Checksum() {
			t.Fatalf("%s after cluster change: %+v", n, revs)
		}
	}
	r3, err := s.SetServerSessionOverride(ctx, "bob", "ms1", domain.SessionOverride{Cookie: &domain.CookieOverride{Name: ptr("SID")}})
	if err != nil || r3.Number != 3 || r3.Config.Cookie.Name != "SID" {
		t.Fatalf("override revision: %+v, %v", r3, err)
	}
	ov, eff, rev, err := s.ServerSessionConfig(ctx, "ms1")
	if err != nil || rev != 3 || *ov.Cookie.Name != "SID" || eff.TimeoutSeconds != 600 {
		t.Fatalf("session config: %+v %+v %d %v", ov, eff, rev, err)
	}
	// Roll back to revision 1, taken before the cluster default changed:
	// the effective config must equal revision 1's anyway.
	r4, err := s.Rollback(ctx, "carol", "ms1", 1)
	if err != nil || r4.Number != 4 || r4.Checksum != r1.Checksum || r4.Config != r1.Config {
		t.Fatalf("rollback: %+v, %v", r4, err)
	}
	_, eff, _, _ = s.ServerSessionConfig(ctx, "ms1")
	if eff != r1.Config {
		t.Fatalf("effective after rollback = %+v", eff)
	}
	if _, err := s.Rollback(ctx, "carol", "ms1", 99); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("rollback to unknown revision: %v", err)
	}
	audit, err := s.Audit(ctx, 0, 0)
	if err != nil || len(audit) == 0 || audit[0].Action != "server.rollback" || audit[0].Actor != "carol" {
		t.Fatalf("audit: %+v, %v", audit, err)
	}
}

func TestConcurrentWriters(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.CreateCluster(ctx, "t", domain.Cluster{Name: "c1"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("s%d", i)
			if _, err := s.CreateServer(ctx, "t", domain.Server{Name: name, Cluster: "c1", Listen: fmt.Sprintf("127.0.0.1:%d", 10000+i)}); err != nil {
				errs <- err
				return
			}
			if _, err := s.SetClusterSessionDefaults(ctx, "t", "c1", domain.SessionOverride{MaxSessions: ptr(i)}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("writer: %v", err)
	}
	servers, _ := s.Servers(ctx, "c1")
	if len(servers) != 50 {
		t.Fatalf("servers = %d", len(servers))
	}
}

func TestEvents(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for i := range 10 {
		typ := domain.EventServerUp
		if i%2 == 1 {
			typ = domain.EventFailover
		}
		e, err := s.AppendEvent(ctx, domain.Event{Type: typ, Cluster: "c1", Server: fmt.Sprintf("ms%d", i%3)})
		if err != nil || e.ID != int64(i+1) || e.Time.IsZero() {
			t.Fatalf("append: %+v, %v", e, err)
		}
	}
	ids := func(es []domain.Event) []int64 {
		out := []int64{}
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	cases := []struct {
		f    domain.EventFilter
		want []int64
	}{
		{domain.EventFilter{Limit: 3}, []int64{8, 9, 10}},
		{domain.EventFilter{Limit: 3, BeforeID: 8}, []int64{5, 6, 7}},
		{domain.EventFilter{AfterID: 7}, []int64{8, 9, 10}},
		{domain.EventFilter{AfterID: 2, Limit: 2}, []int64{3, 4}},
		{domain.EventFilter{Types: []string{domain.EventFailover}, Limit: 2}, []int64{8, 10}},
		{domain.EventFilter{Server: "ms0"}, []int64{1, 4, 7, 10}},
	}
	for _, c := range cases {
		got, err := s.Events(ctx, c.f)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(c.want, ids(got)); d != "" {
			t.Errorf("%+v: %s", c.f, d)
		}
	}
	n, err := s.PruneEvents(ctx, 0, 4)
	if err != nil || n != 6 {
		t.Fatalf("prune: %d, %v", n, err)
	}
	got, _ := s.Events(ctx, domain.EventFilter{})
	if d := cmp.Diff([]int64{7, 8, 9, 10}, ids(got)); d != "" {
		t.Fatal(d)
	}
	e, _ := s.AppendEvent(ctx, domain.Event{Type: domain.EventServerDown})
	if e.ID != 11 {
		t.Fatalf("ids must only grow, got %d", e.ID)
	}
}

func TestDesiredConfig(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	seed(t, s)
	if _, err := s.CreateWebServer(ctx, "t", domain.WebServer{Name: "web1", Cluster: "c1", Listen: "127.0.0.1:8080", NodeManager: "nm1"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := s.DesiredConfig(ctx, wire.KindServer, "ms2")
	if err != nil || cfg.Server == nil || cfg.Revision != 1 || len(cfg.Server.Members) != 2 || cfg.Server.Self.Name != "ms2" || cfg.Checksum == "" {
		t.Fatalf("server config: %+v, %v", cfg, err)
	}
	if _, err := s.SetServerSessionOverride(ctx, "t", "ms2", domain.SessionOverride{Cookie: &domain.CookieOverride{Name: ptr("SID")}}); err != nil {
		t.Fatal(err)
	}
	cfg2, _ := s.DesiredConfig(ctx, wire.KindServer, "ms2")
	if cfg2.Revision != 2 || cfg2.Checksum == cfg.Checksum {
		t.Fatalf("after override: rev %d checksum same=%v", cfg2.Revision, cfg2.Checksum == cfg.Checksum)
	}
	w, err := s.DesiredConfig(ctx, wire.KindWebServer, "web1")
	if err != nil || w.WebServer == nil || !cmp.Equal(w.WebServer.CookieNames, []string{"JSESSIONID", "SID"}) || len(w.WebServer.Members) != 2 {
		t.Fatalf("webserver config: %+v, %v", w.WebServer, err)
	}
	nm, err := s.DesiredConfig(ctx, wire.KindNodeManager, "nm1")
	if err != nil || len(nm.NodeManager.Processes) != 3 {
		t.Fatalf("node manager config: %+v, %v", nm.NodeManager, err)
	}
	if _, err := s.DesiredConfig(ctx, wire.KindServer, "nope"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("unknown node: %v", err)
	}
	nodes, err := s.NodesOfCluster(ctx, "c1")
	if err != nil || len(nodes) != 3 || nodes[2].Kind != wire.KindWebServer {
		t.Fatalf("nodes: %+v, %v", nodes, err)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tandem.db")
	s := open(t, path)
	s.Close()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO goose_db_version (version_id, is_applied) VALUES (?, 1)", store.SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := store.Open(context.Background(), path, nil); !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("open newer database: %v", err)
	}
}

// TestPragmasAndForeignKeys: every pooled connection runs in WAL mode with
// foreign keys on, so the schema's references hold even for raw SQL.
func TestPragmasAndForeignKeys(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	db := s.SQL()
	conns := make([]*sql.Conn, 3) // hold several at once: distinct connections
	for i := range conns {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	for i, c := range conns {
		var mode string
		var fk, busy int
		if err := c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
			t.Fatalf("conn %d journal_mode = %q, %v", i, mode, err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
			t.Fatalf("conn %d foreign_keys = %d, %v", i, fk, err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil || busy < 1000 {
			t.Fatalf("conn %d busy_timeout = %d, %v", i, busy, err)
		}
		_, err := c.ExecContext(ctx, "INSERT INTO servers (name, cluster, listen, route, created_at, updated_at) VALUES ('x', 'no-such-cluster', '127.0.0.1:1', 'x', 0, 0)")
		if err == nil {
			t.Fatalf("conn %d: server with an unknown cluster inserted", i)
		}
	}
}
