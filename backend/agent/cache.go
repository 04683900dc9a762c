package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

// CacheFile is the name of the applied-config cache inside a node's data folder.
const CacheFile = "applied-config.json"

// LoadCached returns the last configuration this node applied successfully,
// as cached in dataDir. It returns an error wrapping domain.ErrNotFound when
// there is none (or dataDir is empty), and wire.ErrBadMessage when the file
// is damaged.
func LoadCached(dataDir string) (wire.Config, error) {
	var cfg wire.Config
	if dataDir == "" {
		return cfg, fmt.Errorf("agent: no data folder, no cached config: %w", domain.ErrNotFound)
	}
	b, err := os.ReadFile(filepath.Join(dataDir, CacheFile))
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, fmt.Errorf("agent: no cached config in %s: %w", dataDir, domain.ErrNotFound)
	}
	if err != nil {
		return cfg, fmt.Errorf("agent: read cached config: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return wire.Config{}, fmt.Errorf("agent: cached config: %w: %w", wire.ErrBadMessage, err)
	}
	if err := cfg.Validate(); err != nil {
		return wire.Config{}, fmt.Errorf("agent: cached config: %w: %w", wire.ErrBadMessage, err)
	}
	return cfg, nil
}

// writeCached stores cfg as the applied config in dataDir atomically: a temp
// file in the same folder is written and fsynced, then renamed over the old
// one, and the folder is fsynced so the rename survives a crash. A reader
// sees either the old or the new document, never a mix. Without a data
// folder nothing is cached.
func writeCached(dataDir string, cfg wire.Config) error {
	if dataDir == "" {
		return nil
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("agent: encode cached config: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("agent: data dir: %w", err)
	}
	tmp, err := os.CreateTemp(dataDir, CacheFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("agent: cache temp file: %w", err)
	}
	tmpName := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if _, err := tmp.Write(b); err != nil {
		return fmt.Errorf("agent: write cache: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("agent: sync cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("agent: close cache: %w", err)
	}
	if err := os.Rename(tmpName, filepath.Join(dataDir, CacheFile)); err != nil {
		return fmt.Errorf("agent: rename cache: %w", err)
	}
	ok = true
	if d, err := os.Open(dataDir); err == nil {
		_ = d.Sync() // best effort: some file systems refuse to sync a folder
		d.Close()
	}
	return nil
}
