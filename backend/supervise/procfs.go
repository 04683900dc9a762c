package supervise

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procInfo is what /proc says about a pid.
type procInfo struct {
	state      byte   // R, S, D, Z, T, ...
	startTicks uint64 // start time in clock ticks since boot (field 22)
}

// errNoProcess means the pid does not exist.
var errNoProcess = errors.New("supervise: no such process")

// readProc reads /proc/PID/stat.
func readProc(pid int) (procInfo, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return procInfo{}, errNoProcess
		}
		return procInfo{}, fmt.Errorf("supervise: read /proc/%d/stat: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces and
	// parentheses itself: the fields that follow start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procInfo{}, fmt.Errorf("supervise: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return procInfo{}, fmt.Errorf("supervise: short /proc/%d/stat", pid)
	}
	ticks, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procInfo{}, fmt.Errorf("supervise: /proc/%d/stat start time: %w", pid, err)
	}
	return procInfo{state: f[0][0], startTicks: ticks}, nil
}

// alive reports whether pid is the same, still living process that started
// at startTicks (a reused pid or a zombie is not).
func alive(pid int, startTicks uint64) bool {
	pi, err := readProc(pid)
	if err != nil {
		return false
	}
	return pi.startTicks == startTicks && pi.state != 'Z' && pi.state != 'X'
}

// pidFile is the content of DIR/<name>.pid.
type pidFile struct {
	Name       string `json:"name"`
	Kind       string `json:"kind"`
	PID        int    `json:"pid"`
	PGID       int    `json:"pgid"`
	StartTicks uint64 `json:"start_ticks"`
	Log        string `json:"log"`
}

func writePidFile(path string, pf pidFile) error {
	b, err := json.Marshal(pf)
	if err != nil {
		return fmt.Errorf("supervise: pid file: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("supervise: pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("supervise: pid file: %w", err)
	}
	return nil
}

func readPidFile(path string) (pidFile, error) {
	var pf pidFile
	b, err := os.ReadFile(path)
	if err != nil {
		return pf, fmt.Errorf("supervise: pid file: %w", err)
	}
	if err := json.Unmarshal(b, &pf); err != nil {
		return pf, fmt.Errorf("supervise: pid file %s: %w", path, err)
	}
	if pf.PID <= 0 || pf.Name == "" {
		return pf, fmt.Errorf("supervise: pid file %s: no pid or name", path)
	}
	return pf, nil
}
