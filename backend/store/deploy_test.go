package store_test

import (
	"context"
	"errors"
	"testing"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

// A deploy pins servers one by one; their desired configs follow the pin,
// the rest keep the cluster's; a pinned version or application cannot be
// deleted; FinishDeploy moves the cluster and removes the pins, and the
// history and the rollback target follow.
func TestDeployPinsAndFinish(t *testing.T) {
	s := newStore(t)
	seed(t, s)
	ctx := context.Background()
	if _, err := s.CreateApplication(ctx, "test", domain.Application{Name: "cart", Kind: domain.AppProcess, Command: []string{"python3", "app.py"}}); err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{"v1", "v2"} {
		sum := []string{"1111111111111111111111111111111111111111111111111111111111111111", "2222222222222222222222222222222222222222222222222222222222222222"}[i]
		if _, _, err := s.AddAppVersion(ctx, "test", domain.AppVersion{Application: "cart", Version: v, SHA256: sum, Size: 10}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, _, err := s.SetClusterApplication(ctx, "test", "c1", "cart", "v1"); err != nil {
		t.Fatal(err)
	}
	version := func(server string) string {
		t.Helper()
		cfg, err := s.DesiredConfig(ctx, wire.KindServer, server)
		if err != nil || cfg.Server.App == nil {
			t.Fatalf("desired config of %s: %+v %v", server, cfg.Server, err)
		}
		byCluster, err := s.ClusterConfigs(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		for _, nc := range byCluster {
			if nc.Name == server && nc.Config.Checksum != cfg.Checksum {
				t.Fatalf("ClusterConfigs and DesiredConfig differ for %s", server)
			}
		}
		return cfg.Server.App.Version
	}
	if err := s.SetServerApp(ctx, "test", "ms1", "cart", "v2"); err != nil {
		t.Fatal(err)
	}
	if v1, v2 := version("ms1"), version("ms2"); v1 != "v2" || v2 != "v1" {
		t.Fatalf("ms1 runs %s, ms2 %s; want v2 (pinned) and v1", v1, v2)
	}
	if _, _, err := s.DeleteAppVersion(ctx, "test", "cart", "v2"); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("delete a pinned version: %v", err)
	}
	if err := s.FinishDeploy(ctx, "test", "c1", "cart", "v2", domain.DeployJob); err != nil {
		t.Fatal(err)
	}
	if v1, v2 := version("ms1"), version("ms2"); v1 != "v2" || v2 != "v2" {
		t.Fatalf("after the deploy ms1 runs %s, ms2 %s", v1, v2)
	}
	if app, v, err := s.RollbackTarget(ctx, "c1"); err != nil || app != "cart" || v != "v1" {
		t.Fatalf("rollback target %s@%s %v, want cart@v1", app, v, err)
	}
	deps, err := s.Deployments(ctx, "c1")
	if err != nil || len(deps) != 2 || deps[0].Kind != domain.DeployJob || deps[0].FromVersion != "v1" || deps[0].ToVersion != "v2" {
		t.Fatalf("history %+v %v", deps, err)
	}
	if _, _, err := s.DeleteAppVersion(ctx, "test", "cart", "v1"); err != nil {
		t.Fatalf("delete v1 no server runs: %v", err)
	}
}
