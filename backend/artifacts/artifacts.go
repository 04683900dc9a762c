// Package artifacts keeps the uploaded versions of applications: gzipped
// tar archives, streamed to disk (never held whole in memory),
// content-addressed by SHA-256, checked entry by entry before anything is
// kept, and unpacked safely where they run.
//
// An archive is refused (ErrInvalid, nothing stored) when it is not gzip
// or not tar, is larger than the limit (compressed, or four times the
// limit unpacked), has an entry that leaves the archive's root (absolute
// paths, "..", links pointing outside) or is not a file, folder or link,
// or lacks a file the application's command names.
package artifacts

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// ErrInvalid wraps every reason an archive is refused.
var ErrInvalid = errors.New("artifacts: invalid archive")

// DefaultMaxBytes is the default limit of an archive (compressed).
const DefaultMaxBytes = 512 << 20

// unpackedFactor bounds the unpacked size: a small archive may not unpack
// into a disk-filling one.
const unpackedFactor = 4

// Info describes a stored archive.
type Info struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Store keeps archives in one folder as SHA256.tar.gz.
type Store struct {
	dir string
	max int64
}

// Open returns the store in dir (created 0700), with max bytes per archive
// (0: DefaultMaxBytes).
func Open(dir string, max int64) (*Store, error) {
	if max <= 0 {
		max = DefaultMaxBytes
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("artifacts: %w", err)
	}
	return &Store{dir: dir, max: max}, nil
}

// MaxBytes is the store's limit per archive.
func (s *Store) MaxBytes() int64 { return s.max }

var shaRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Path is where the archive with that SHA-256 is kept; "" for a malformed sum.
func (s *Store) Path(sum string) string {
	if !shaRE.MatchString(sum) {
		return ""
	}
	return filepath.Join(s.dir, sum+".tar.gz")
}

// Put reads an archive from r, checks it (Check) while it streams to a
// temporary file, and keeps it under its SHA-256. The same bytes again
// are kept once.
func (s *Store) Put(r io.Reader, command []string) (Info, error) {
	tmp, err := os.CreateTemp(s.dir, ".upload-*")
	if err != nil {
		return Info{}, fmt.Errorf("artifacts: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	defer tmp.Close()
	h := sha256.New()
	counted := &countingReader{r: io.LimitReader(r, s.max+1)}
	if err := Check(io.TeeReader(counted, io.MultiWriter(tmp, h)), s.max*unpackedFactor, command); err != nil {
		if counted.n > s.max {
			return Info{}, fmt.Errorf("%w: larger than the limit of %d bytes", ErrInvalid, s.max)
		}
		return Info{}, err
	}
	// The archive may end before the gzip stream does (padding): keep
	// and hash every byte sent.
	if _, err := io.Copy(io.MultiWriter(tmp, h), counted); err != nil {
		return Info{}, fmt.Errorf("artifacts: read upload: %w", err)
	}
	if counted.n > s.max {
		return Info{}, fmt.Errorf("%w: larger than the limit of %d bytes", ErrInvalid, s.max)
	}
	if err := tmp.Sync(); err != nil {
		return Info{}, fmt.Errorf("artifacts: %w", err)
	}
	info := Info{SHA256: hex.EncodeToString(h.Sum(nil)), Size: counted.n}
	if err := tmp.Close(); err != nil {
		return Info{}, fmt.Errorf("artifacts: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.Path(info.SHA256)); err != nil {
		return Info{}, fmt.Errorf("artifacts: %w", err)
	}
	return info, nil
}

// Remove deletes the archive with that SHA-256 (absent: no error).
func (s *Store) Remove(sum string) error {
	p := s.Path(sum)
	if p == "" {
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("artifacts: %w", err)
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Check reads a whole gzipped tar archive and reports the first reason to
// refuse it: not gzip or tar, an entry that escapes the root or is not a
// file, folder or symbolic link, more than maxUnpacked bytes unpacked, or
// a file of command missing (see CommandFiles).
func Check(r io.Reader, maxUnpacked int64, command []string) error {
	return walk(r, maxUnpacked, command, func(*tar.Header, string, io.Reader) error { return nil })
}

// Unpack checks and extracts an archive into dest (which must not exist
// yet): into a temporary folder beside it first, renamed into place when
// every entry is written, so dest is whole or absent. Files keep their
// executable bit and are read-only.
func Unpack(r io.Reader, dest string, maxUnpacked int64) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dest), ".unpack-*")
	if err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	defer os.RemoveAll(tmp) // after the rename, a no-op
	err = walk(r, maxUnpacked, nil, func(hd *tar.Header, name string, body io.Reader) error {
		target := filepath.Join(tmp, filepath.FromSlash(name))
		switch hd.Typeflag {
		case tar.TypeDir:
			return os.MkdirAll(target, 0o755)
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			return os.Symlink(hd.Linkname, target)
		default:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			mode := os.FileMode(0o444)
			if hd.Mode&0o111 != 0 {
				mode = 0o555
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, body); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}
	})
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, dest); err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	return nil
}

// walk checks every entry and hands the safe ones to fn.
func walk(r io.Reader, maxUnpacked int64, command []string, fn func(*tar.Header, string, io.Reader) error) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("%w: not gzip: %w", ErrInvalid, err)
	}
	tr := tar.NewReader(zr)
	files := map[string]bool{}
	var total int64
	entries := 0
	for {
		hd, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: not a tar archive: %w", ErrInvalid, err)
		}
		entries++
		name, err := entryName(hd.Name)
		if err != nil {
			return err
		}
		switch hd.Typeflag {
		case tar.TypeDir:
		case tar.TypeReg:
			total += hd.Size
			if total > maxUnpacked {
				return fmt.Errorf("%w: unpacks to more than %d bytes", ErrInvalid, maxUnpacked)
			}
			files[name] = true
		case tar.TypeSymlink:
			if err := checkLink(name, hd.Linkname); err != nil {
				return err
			}
			files[name] = true
		default:
			return fmt.Errorf("%w: entry %q is not a file, folder or symbolic link (type %q)", ErrInvalid, hd.Name, string(hd.Typeflag))
		}
		if name == "." {
			continue
		}
		if err := fn(hd, name, tr); err != nil {
			if errors.Is(err, ErrInvalid) {
				return err
			}
			return fmt.Errorf("artifacts: unpack %s: %w", name, err)
		}
	}
	if entries == 0 {
		return fmt.Errorf("%w: the archive is empty", ErrInvalid)
	}
	for _, f := range CommandFiles(command) {
		if !files[f] {
			return fmt.Errorf("%w: the application's command names %q, which is not in the archive", ErrInvalid, f)
		}
	}
	return nil
}

// entryName cleans an entry name; one that leaves the root is refused.
func entryName(raw string) (string, error) {
	if raw == "" || strings.HasPrefix(raw, "/") || strings.ContainsRune(raw, 0) || strings.Contains(raw, "\\") {
		return "", fmt.Errorf("%w: entry %q: absolute or malformed path", ErrInvalid, raw)
	}
	clean := path.Clean(raw)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("%w: entry %q leaves the archive's root", ErrInvalid, raw)
	}
	return clean, nil
}

// checkLink refuses a symbolic link whose target leaves the root.
func checkLink(name, target string) error {
	if target == "" || strings.HasPrefix(target, "/") {
		return fmt.Errorf("%w: link %q points to %q, outside the archive", ErrInvalid, name, target)
	}
	resolved := path.Clean(path.Join(path.Dir(name), target))
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return fmt.Errorf("%w: link %q points to %q, outside the archive", ErrInvalid, name, target)
	}
	return nil
}

// CommandFiles lists the files of a command that must be in the archive
// (paths relative to its root): the program when it is a relative path
// (./cart, bin/cart), and every later argument that is a relative path to
// a file (has a / or a dot, and is not an option): ["python3","app.py"]
// needs app.py. A bare program name (python3, java) is the node's.
func CommandFiles(command []string) []string {
	var out []string
	for i, a := range command {
		if a == "" || strings.HasPrefix(a, "-") || strings.HasPrefix(a, "/") || strings.Contains(a, "=") {
			continue
		}
		if i == 0 && !strings.Contains(a, "/") {
			continue
		}
		if i > 0 && !strings.Contains(a, "/") && !strings.Contains(a, ".") {
			continue
		}
		out = append(out, path.Clean(a))
	}
	return out
}
