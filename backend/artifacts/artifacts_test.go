package artifacts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func archive(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		hd := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link}
		if hd.Typeflag == 0 {
			hd.Typeflag = tar.TypeReg
		}
		if hd.Mode == 0 {
			hd.Mode = 0o644
		}
		if hd.Typeflag == tar.TypeReg {
			hd.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hd); err != nil {
			t.Fatal(err)
		}
		if hd.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPutKeepsGoodArchivesByHash(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	good := archive(t, entry{name: "app/", typ: tar.TypeDir, mode: 0o755}, entry{name: "app/main.py", body: "print(1)"}, entry{name: "bin/run", body: "#!/bin/sh", mode: 0o755},
		entry{name: "latest", typ: tar.TypeSymlink, link: "app/main.py"})
	info, err := s.Put(bytes.NewReader(good), []string{"python3", "app/main.py"})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(good)
	if info.SHA256 != hex.EncodeToString(sum[:]) || info.Size != int64(len(good)) {
		t.Fatalf("info %+v", info)
	}
	if b, err := os.ReadFile(s.Path(info.SHA256)); err != nil || !bytes.Equal(b, good) {
		t.Fatalf("stored archive differs: %v", err)
	}
	dest := filepath.Join(t.TempDir(), "v1")
	f, _ := os.Open(s.Path(info.SHA256))
	defer f.Close()
	if err := Unpack(f, dest, 1<<20); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "latest")); err != nil || string(b) != "print(1)" {
		t.Fatalf("unpacked link: %q %v", b, err)
	}
	st, err := os.Stat(filepath.Join(dest, "bin/run"))
	if err != nil || st.Mode().Perm() != 0o555 {
		t.Fatalf("unpacked program mode %v %v, want read-only and executable", st.Mode(), err)
	}
}

func TestHostileArchivesAreRefusedAndNothingStays(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 3000)
	cases := []struct {
		name string
		data func(t *testing.T) []byte
		cmd  []string
	}{
		{"not gzip", func(*testing.T) []byte { return []byte("PK\x03\x04 a zip file") }, nil},
		{"gzip but not tar", func(t *testing.T) []byte {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write([]byte(strings.Repeat("not a tar header ", 64)))
			zw.Close()
			return b.Bytes()
		}, nil},
		{"empty", func(t *testing.T) []byte { return archive(t) }, nil},
		{"dot-dot", func(t *testing.T) []byte { return archive(t, entry{name: "../evil", body: "x"}) }, nil},
		{"nested dot-dot", func(t *testing.T) []byte { return archive(t, entry{name: "a/../../evil", body: "x"}) }, nil},
		{"absolute", func(t *testing.T) []byte { return archive(t, entry{name: "/etc/evil", body: "x"}) }, nil},
		{"symlink out", func(t *testing.T) []byte {
			return archive(t, entry{name: "a/link", typ: tar.TypeSymlink, link: "../../etc/passwd"})
		}, nil},
		{"absolute symlink", func(t *testing.T) []byte {
			return archive(t, entry{name: "link", typ: tar.TypeSymlink, link: "/etc/passwd"})
		}, nil},
		{"hard link", func(t *testing.T) []byte { return archive(t, entry{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}) }, nil},
		{"device", func(t *testing.T) []byte { return archive(t, entry{name: "dev", typ: tar.TypeChar}) }, nil},
		{"too large", func(t *testing.T) []byte {
			// random-ish content that gzip cannot shrink below the limit
			var sb strings.Builder
			x := uint32(1)
			for range 4000 {
				x = x*1664525 + 1013904223
				sb.WriteByte(byte(x >> 24))
			}
			return archive(t, entry{name: "blob", body: sb.String()})
		}, nil},
		{"unpacks too large", func(t *testing.T) []byte {
			return archive(t, entry{name: "a", body: big}, entry{name: "b", body: big}, entry{name: "c", body: big})
		}, nil},
		{"command missing", func(t *testing.T) []byte { return archive(t, entry{name: "other.py", body: "x"}) }, []string{"python3", "app.py"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s, err := Open(dir, 2048)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Put(bytes.NewReader(c.data(t)), c.cmd)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Put: %v, want ErrInvalid", err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Fatalf("left behind: %v", ents)
			}
			if c.cmd != nil {
				return // a good archive for another command
			}
			parent := t.TempDir()
			if err := Unpack(bytes.NewReader(c.data(t)), filepath.Join(parent, "v"), 2048*unpackedFactor/4); err == nil {
				t.Fatal("Unpack accepted it")
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Fatalf("unpack left behind: %v", ents)
			}
		})
	}
}

func TestCommandFiles(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cmd  []string
		want string
	}{
		{[]string{"python3", "app.py"}, "app.py"},
		{[]string{"./cart", "--port-from-env"}, "cart"},
		{[]string{"bin/cart"}, "bin/cart"},
		{[]string{"java", "-jar", "lib/app.jar", "-Dx=y"}, "lib/app.jar"},
		{[]string{"/usr/bin/node", "server"}, ""},
	} {
		if got := strings.Join(CommandFiles(c.cmd), ","); got != c.want {
			t.Errorf("CommandFiles(%q) = %q, want %q", c.cmd, got, c.want)
		}
	}
}
