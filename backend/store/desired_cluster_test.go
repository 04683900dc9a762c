package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tandem/backend/domain"
	"tandem/backend/store"
	"tandem/backend/wire"
)

// TestClusterConfigsMatchDesiredConfig: the one-pass builder gives every
// node of a cluster the very document the per-node builder gives it (the
// same JSON, so the same revision and checksum), in NodesOfCluster's
// order, over a domain with overrides, explicit backups, several
// revisions, web servers, node managers and a second cluster.
func TestClusterConfigsMatchDesiredConfig(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.CreateNodeManager(ctx, "t", domain.NodeManager{Name: "nm1", Listen: "127.0.0.1:9740"}))
	must(s.CreateNodeManager(ctx, "t", domain.NodeManager{Name: "nm2", Listen: "127.0.0.1:9750"}))
	must(s.CreateCluster(ctx, "t", domain.Cluster{Name: "c1", FailoverMode: domain.FailoverVerify, HeartbeatIntervalMS: 300, HeartbeatTimeoutMS: 1200}))
	must(s.CreateCluster(ctx, "t", domain.Cluster{Name: "c2"}))
	must(s.CreateCluster(ctx, "t", domain.Cluster{Name: "empty"}))
	// Created out of name order; some with a node manager, some without.
	for i, n := range []string{"ms3", "ms1", "ms5", "ms2", "ms4"} {
		nm := []string{"nm1", "", "nm2", "nm1", ""}[i]
		must(s.CreateServer(ctx, "t", domain.Server{Name: n, Cluster: "c1", Listen: fmt.Sprintf("127.0.0.1:%d", 9741+i), NodeManager: nm}))
	}
	must(s.CreateServer(ctx, "t", domain.Server{Name: "other1", Cluster: "c2", Listen: "127.0.0.1:9761", NodeManager: "nm1"}))
	must(s.UpdateServer(ctx, "t", domain.Server{Name: "ms2", Cluster: "c1", Listen: "127.0.0.1:9744", NodeManager: "nm1", Backup: "ms4"}))
	must(s.CreateWebServer(ctx, "t", domain.WebServer{Name: "web2", Cluster: "c1", Listen: "127.0.0.1:8081"}))
	must(s.CreateWebServer(ctx, "t", domain.WebServer{Name: "web1", Cluster: "c1", Listen: "127.0.0.1:8080", NodeManager: "nm2"}))
	must(s.CreateWebServer(ctx, "t", domain.WebServer{Name: "web9", Cluster: "c2", Listen: "127.0.0.1:8089"}))
	// Revisions: cluster defaults (every server), overrides, a rollback.
	must(s.SetClusterSessionDefaults(ctx, "t", "c1", domain.SessionOverride{TimeoutSeconds: ptr(600), Replication: ptr("async")}))
	must(s.SetServerSessionOverride(ctx, "t", "ms1", domain.SessionOverride{Cookie: &domain.CookieOverride{Name: ptr("SID")}}))
	must(s.SetServerSessionOverride(ctx, "t", "ms1", domain.SessionOverride{Cookie: &domain.CookieOverride{Name: ptr("SID")}, MaxSessions: ptr(10)}))
	must(s.SetServerSessionOverride(ctx, "t", "ms4", domain.SessionOverride{Cookie: &domain.CookieOverride{Name: ptr("ASID"), Secure: ptr(true)}}))
	must(s.SetServerSessionOverride(ctx, "t", "ms5", domain.SessionOverride{Cookie: &domain.CookieOverride{Name: ptr("SID")}}))
	must(s.SetServerSessionOverride(ctx, "t", "ms5", domain.SessionOverride{}))
	must(s.Rollback(ctx, "t", "ms1", 3)) // 1 created, 2 defaults, 3 SID, 4 SID+10
	// ms3 binds every address and is reached at the host it connected from.
	must(s.UpdateServer(ctx, "t", domain.Server{Name: "ms3", Cluster: "c1", Listen: "0.0.0.0:9741", NodeManager: "nm1"}))
	if _, changed, err := s.SetAdvertise(ctx, "ms3", "10.1.2.3", true); err != nil || !changed {
		t.Fatalf("advertise ms3: %v %v", changed, err)
	}
	if _, changed, err := s.SetAdvertise(ctx, "ms4", "10.1.2.4", true); err != nil || changed {
		t.Fatalf("ms4 binds one address, its host is kept: %v %v", changed, err)
	}
	var invalid *domain.InvalidError
	if _, _, err := s.SetAdvertise(ctx, "ms4", "bad host", false); !errors.As(err, &invalid) || invalid.Field != "advertise" {
		t.Fatalf("a bad host: %v", err)
	}
	if cfg, err := s.DesiredConfig(ctx, wire.KindServer, "ms1"); err != nil {
		t.Fatal(err)
	} else if m := cfg.Server.Members[2]; m.Name != "ms3" || m.Listen != "10.1.2.3:9741" || m.Internal != "10.1.2.3:9742" {
		t.Fatalf("ms3 as its peers see it: %+v", m)
	}
	if cfg, err := s.DesiredConfig(ctx, wire.KindServer, "ms3"); err != nil {
		t.Fatal(err)
	} else if cfg.Server.Self.Listen != "0.0.0.0:9741" {
		t.Fatalf("ms3 binds %q", cfg.Server.Self.Listen)
	}
	must(s.SetServerSessionOverride(ctx, "t", "other1", domain.SessionOverride{TimeoutSeconds: ptr(60)}))

	for _, cluster := range []string{"c1", "c2", "empty"} {
		got, err := s.ClusterConfigs(ctx, cluster)
		if err != nil {
			t.Fatalf("%s: %v", cluster, err)
		}
		refs, err := s.NodesOfCluster(ctx, cluster)
		if err != nil {
			t.Fatal(err)
		}
		gotRefs := make([]store.NodeRef, 0, len(got))
		for _, nc := range got {
			gotRefs = append(gotRefs, nc.NodeRef)
			want, err := s.DesiredConfig(ctx, nc.Kind, nc.Name)
			if err != nil {
				t.Fatalf("%s %s: %v", nc.Kind, nc.Name, err)
			}
			if d := cmp.Diff(want, nc.Config); d != "" {
				t.Errorf("%s %s: batch config differs from DesiredConfig (-single +batch):\n%s", nc.Kind, nc.Name, d)
			}
			wb, _ := json.Marshal(want)
			gb, _ := json.Marshal(nc.Config)
			if string(wb) != string(gb) {
				t.Errorf("%s %s: JSON differs:\n single %s\n batch  %s", nc.Kind, nc.Name, wb, gb)
			}
		}
		if d := cmp.Diff(refs, gotRefs); d != "" {
			t.Errorf("%s: nodes differ from NodesOfCluster (-want +got):\n%s", cluster, d)
		}
	}

	// Spot checks that the domain above is what it claims to be.
	c1, _ := s.ClusterConfigs(ctx, "c1")
	if len(c1) != 7 || c1[0].Name != "ms1" || c1[4].Name != "ms5" || c1[5].Name != "web1" || c1[6].Kind != wire.KindWebServer {
		t.Fatalf("c1 nodes: %+v", c1)
	}
	ms1 := c1[0].Config
	if ms1.Revision != 5 || ms1.Server.Session.MaxSessions == 10 || ms1.Server.Session.Cookie.Name != "SID" || len(ms1.Server.Members) != 5 {
		t.Errorf("ms1 after rollback to 3: revision %d, session %+v", ms1.Revision, ms1.Server.Session)
	}
	if b := c1[1].Config.Server.Self.Backup; b != "ms4" || c1[1].NodeManager != "nm1" {
		t.Errorf("ms2: backup %q, node manager %q", b, c1[1].NodeManager)
	}
	if d := cmp.Diff([]string{"JSESSIONID", "ASID", "SID"}, c1[5].Config.WebServer.CookieNames); d != "" {
		t.Errorf("cookie names: %s", d)
	}
	if _, err := s.ClusterConfigs(ctx, "nope"); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("unknown cluster: %v, want ErrNotFound", err)
	}
}
