package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"tandem/backend/domain"
	"tandem/backend/store"
)

// NodeTokenFile is the node token's file name in the data folder.
const NodeTokenFile = "node.token"

// BootstrapConfig says where the first-start secrets come from.
type BootstrapConfig struct {
	DataDir    string
	AdminToken string    // TANDEM_ADMIN_TOKEN; empty: generate one and print it
	NodeToken  string    // TANDEM_NODE_TOKEN; empty: DATA_DIR/node.token, created if missing
	Stdout     io.Writer // where a generated admin token is printed, once
}

// Bootstrap prepares a fresh domain on first start: with no users and no
// tokens yet, it creates the admin API token "bootstrap" (role admin) and
// the user "admin" whose password is that token, in one transaction, and
// prints a generated token once to cfg.Stdout. It returns the node token.
func Bootstrap(ctx context.Context, st *store.Store, cfg BootstrapConfig) (nodeToken string, err error) {
	nodeToken, err = loadNodeToken(cfg.DataDir, cfg.NodeToken)
	if err != nil {
		return "", err
	}
	users, err := st.CountUsers(ctx)
	if err != nil {
		return "", err
	}
	tokens, err := st.CountTokens(ctx)
	if err != nil {
		return "", err
	}
	if users > 0 || tokens > 0 {
		return nodeToken, nil
	}
	secret, generated := cfg.AdminToken, false
	if secret == "" {
		if secret, _, err = NewSecret(); err != nil {
			return "", err
		}
		generated = true
	}
	pw, err := HashPassword(secret)
	if err != nil {
		return "", fmt.Errorf("auth: TANDEM_ADMIN_TOKEN: %w", err)
	}
	err = st.InTx(ctx, func(tx *store.Store) error {
		if _, err := tx.CreateToken(ctx, "bootstrap", "bootstrap", domain.RoleAdmin, HashSecret(secret)); err != nil {
			return err
		}
		_, err := tx.CreateUser(ctx, "bootstrap", domain.User{Name: "admin", Role: domain.RoleAdmin}, pw)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("auth: bootstrap: %w", err)
	}
	if generated && cfg.Stdout != nil {
		fmt.Fprintf(cfg.Stdout, "tandem: admin API token (shown once; also user admin's first password):\n%s\n", secret)
	}
	return nodeToken, nil
}

func loadNodeToken(dataDir, fromEnv string) (string, error) {
	if fromEnv != "" {
		return fromEnv, nil
	}
	path := filepath.Join(dataDir, NodeTokenFile)
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("auth: %s is empty", path)
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("auth: read node token: %w", err)
	}
	tok, _, err := NewSecret()
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("auth: create node token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("auth: write node token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("auth: write node token: %w", err)
	}
	return tok, nil
}
