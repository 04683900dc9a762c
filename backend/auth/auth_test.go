package auth_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tandem/backend/auth"
	"tandem/backend/domain"
	"tandem/backend/store"
)

func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(dir, "tandem.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestBootstrapGeneratesOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openStore(t, dir)
	var out bytes.Buffer
	nodeTok, err := auth.Bootstrap(ctx, st, auth.BootstrapConfig{DataDir: dir, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	secret := lines[len(lines)-1]
	if len(secret) != 64 {
		t.Fatalf("printed %q", out.String())
	}
	tok, err := st.TokenByHash(ctx, auth.HashSecret(secret))
	if err != nil || tok.Role != domain.RoleAdmin {
		t.Fatalf("bootstrap token: %+v, %v", tok, err)
	}
	// Only the hash is stored.
	dump, _ := st.DumpRows(ctx)
	for table, rows := range dump {
		for _, r := range rows {
			if strings.Contains(r, secret) {
				t.Fatalf("secret stored in %s", table)
			}
		}
	}
	fi, err := os.Stat(filepath.Join(dir, auth.NodeTokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("node token file: %v %v", fi, err)
	}
	// Second start: nothing printed, same node token.
	out.Reset()
	nodeTok2, err := auth.Bootstrap(ctx, st, auth.BootstrapConfig{DataDir: dir, Stdout: &out})
	if err != nil || nodeTok2 != nodeTok || out.Len() != 0 {
		t.Fatalf("second bootstrap: %q %v printed %q", nodeTok2, err, out.String())
	}
	// The node token authenticates nodes and nothing else.
	a := auth.New(st, nodeTok, nil)
	req, _ := http.NewRequest("GET", "/api/v1/nodes/connect", nil)
	req.Header.Set("Authorization", "Bearer "+nodeTok)
	if _, err := a.CheckNode(req); err != nil {
		t.Fatalf("node token refused: %v", err)
	}
	if _, err := a.Authenticate(req); err == nil {
		t.Fatal("node token accepted as a user token")
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	if _, err := a.CheckNode(req); err == nil {
		t.Fatal("admin token accepted as node token")
	}
	if id, err := a.Authenticate(req); err != nil || id.Role != domain.RoleAdmin {
		t.Fatalf("admin token: %+v %v", id, err)
	}
}

func TestBootstrapFromEnvironment(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openStore(t, dir)
	var out bytes.Buffer
	nodeTok, err := auth.Bootstrap(ctx, st, auth.BootstrapConfig{DataDir: dir, AdminToken: "env-admin-token-123", NodeToken: "env-node-token", Stdout: &out})
	if err != nil || nodeTok != "env-node-token" || out.Len() != 0 {
		t.Fatalf("bootstrap: %q %v %q", nodeTok, err, out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, auth.NodeTokenFile)); !os.IsNotExist(err) {
		t.Fatalf("node.token written although TANDEM_NODE_TOKEN is set: %v", err)
	}
	if _, err := st.TokenByHash(ctx, auth.HashSecret("env-admin-token-123")); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Bootstrap(ctx, st, auth.BootstrapConfig{DataDir: dir, AdminToken: "short"}); err != nil {
		t.Fatalf("an existing domain ignores TANDEM_ADMIN_TOKEN: %v", err)
	}
}
