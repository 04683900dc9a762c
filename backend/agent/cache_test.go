package agent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

func serverConfig(rev int64, sum string) wire.Config {
	return wire.Config{
		Revision: rev,
		Checksum: sum,
		Server: &wire.ServerConfig{
			Self:    wire.Member{Name: "ms1", Route: "ms1", Listen: "127.0.0.1:9741"},
			Cluster: wire.ClusterSettings{Name: "c1", FailoverMode: "immediate", BackupPolicy: "ring", HeartbeatIntervalMS: 500, HeartbeatTimeoutMS: 1500},
			Members: []wire.Member{{Name: "ms1", Route: "ms1", Listen: "127.0.0.1:9741"}},
			Session: domain.DefaultSessionConfig(),
		},
	}
}

func TestLoadCachedNone(t *testing.T) {
	t.Parallel()
	_, err := LoadCached(t.TempDir())
	if !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("LoadCached(empty dir) = %v, want ErrNotFound", err)
	}
}

func TestCacheRoundTripAndReplace(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data") // created by writeCached
	first := serverConfig(1, "aaa")
	if err := writeCached(dir, first); err != nil {
		t.Fatal(err)
	}
	got, err := LoadCached(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, got); diff != "" {
		t.Fatalf("cached config differs (-want +got):\n%s", diff)
	}
	second := serverConfig(2, "bbb")
	second.Server.Session.Cookie.Name = "TSESSION"
	if err := writeCached(dir, second); err != nil {
		t.Fatal(err)
	}
	got, err = LoadCached(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(second, got); diff != "" {
		t.Fatalf("replaced config differs (-want +got):\n%s", diff)
	}
	// Atomic replace leaves no temp files behind.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != CacheFile {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("data dir holds %v, want only %s", names, CacheFile)
	}
}

func TestLoadCachedRejectsDamage(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"truncated":     `{"revision":1,"checksum":"x","server":{`,
		"unknown field": `{"revision":1,"checksum":"x","bogus":true,"server":{}}`,
		"no section":    `{"revision":1,"checksum":"x"}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, CacheFile), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadCached(dir); !errors.Is(err, wire.ErrBadMessage) {
				t.Fatalf("LoadCached = %v, want ErrBadMessage", err)
			}
		})
	}
}

func TestConnectURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"http://127.0.0.1:9736":        "ws://127.0.0.1:9736/api/v1/nodes/connect",
		"http://127.0.0.1:9736/":       "ws://127.0.0.1:9736/api/v1/nodes/connect",
		"https://admin.example:443/x/": "wss://admin.example:443/x/api/v1/nodes/connect",
		"ws://h:1":                     "ws://h:1/api/v1/nodes/connect",
	} {
		got, err := ConnectURL(in)
		if err != nil || got != want {
			t.Errorf("ConnectURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://h", "http://", "127.0.0.1:9736"} {
		if got, err := ConnectURL(bad); err == nil {
			t.Errorf("ConnectURL(%q) = %q, want error", bad, got)
		}
	}
}

func FuzzDecodeAdminMessage(f *testing.F) {
	good, _ := wire.Encode(wire.TypeConfig, serverConfig(1, "x"))
	f.Add(good)
	f.Add([]byte(`{"v":1,"type":"welcome","body":{"name":"ms1","heartbeat_interval_ms":500}}`))
	f.Add([]byte(`{"v":1,"type":"command","body":{"id":"1","action":"start","target":"ms1"}}`))
	f.Add([]byte(`{"v":1,"type":"error","body":{"code":"unknown_node"}}`))
	f.Add([]byte(`{"v":1,"type":"event_ack","body":{"seq":7}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := wire.DecodeAdminMessage(data)
		if err != nil {
			if !errors.Is(err, wire.ErrBadMessage) {
				t.Fatalf("error %v is not ErrBadMessage", err)
			}
			return
		}
		if msg == nil {
			t.Fatal("nil message without error")
		}
	})
}
