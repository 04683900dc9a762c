package supervise

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
)

// LogFile is a child's output file with size-based rotation. The child
// writes to it directly (O_APPEND), not through the supervisor, so its
// output keeps flowing while no supervisor runs (a node manager restart).
// Rotation therefore copies the file to Path.1 (shifting older copies up to
// Path.Keep) and truncates it in place: lines written between the copy and
// the truncation are lost, the price of not owning the child's descriptor.
type LogFile struct {
	Path     string
	MaxBytes int64 // rotate once the file is at least this large; 0: never
	Keep     int   // rotated copies kept (Path.1 .. Path.Keep)
}

// Open opens the file for the child to append to.
func (l LogFile) Open() (*os.File, error) {
	f, err := os.OpenFile(l.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("supervise: open log: %w", err)
	}
	return f, nil
}

// RotateIfNeeded rotates the file when it has reached MaxBytes and reports
// whether it did.
func (l LogFile) RotateIfNeeded() (bool, error) {
	if l.MaxBytes <= 0 {
		return false, nil
	}
	st, err := os.Stat(l.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("supervise: stat log: %w", err)
	}
	if st.Size() < l.MaxBytes {
		return false, nil
	}
	// Copied aside first, then renamed into place: Path.1 is never seen
	// half written or missing (by an operator's tail, or after a crash in
	// the middle of the copy).
	if err := copyFile(l.Path, l.Path+".1.tmp"); err != nil {
		_ = os.Remove(l.Path + ".1.tmp")
		return false, err
	}
	keep := max(l.Keep, 1)
	_ = os.Remove(l.Path + "." + strconv.Itoa(keep))
	for i := keep - 1; i >= 1; i-- {
		err := os.Rename(l.Path+"."+strconv.Itoa(i), l.Path+"."+strconv.Itoa(i+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("supervise: rotate log: %w", err)
		}
	}
	if err := os.Rename(l.Path+".1.tmp", l.Path+".1"); err != nil {
		return false, fmt.Errorf("supervise: rotate log: %w", err)
	}
	if err := os.Truncate(l.Path, 0); err != nil {
		return false, fmt.Errorf("supervise: truncate log: %w", err)
	}
	return true, nil
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return fmt.Errorf("supervise: rotate log: %w", err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("supervise: rotate log: %w", err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("supervise: rotate log: %w", err)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("supervise: rotate log: %w", err)
	}
	return nil
}
