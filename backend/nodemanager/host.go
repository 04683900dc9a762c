package nodemanager

import (
	"bufio"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"

	"tandem/backend/domain"
)

// ReadHost describes this machine for the heartbeat: host name, the
// addresses of its interfaces that are up (loopback and link-local left
// out), CPUs and memory (from /proc/meminfo; 0 when unknown), so the
// console can show which servers share a machine.
func ReadHost() *domain.HostInfo {
	h := &domain.HostInfo{CPUs: runtime.NumCPU(), Addresses: []string{}}
	h.Name, _ = os.Hostname()
	if ifs, err := net.Interfaces(); err == nil {
		for _, ifc := range ifs {
			if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
				continue
			}
			addrs, err := ifc.Addrs()
			if err != nil {
				continue
			}
			for _, a := range addrs {
				ipn, ok := a.(*net.IPNet)
				if !ok || ipn.IP.IsLinkLocalUnicast() || ipn.IP.IsLoopback() {
					continue
				}
				if len(h.Addresses) < 16 {
					h.Addresses = append(h.Addresses, ipn.IP.String())
				}
			}
		}
	}
	h.MemoryBytes = memTotal()
	return h
}

func memTotal() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// MemTotal:       24590460 kB
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseUint(f[0], 10, 64)
				if err == nil {
					return kb * 1024
				}
			}
		}
	}
	return 0
}
