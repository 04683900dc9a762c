package serve

import (
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
)

// Ports FreePort picks from: below Linux's ephemeral range (32768 and up),
// which the kernel hands out as the local port of outgoing connections; a
// port chosen there can be taken by a connection between the check and the
// bind by whoever was told the port.
const (
	freePortMin = 10000
	freePortMax = 32767
)

// ErrNoFreePort means no free loopback port was found.
var ErrNoFreePort = errors.New("serve: no free loopback port")

// FreePort returns a loopback port that was free a moment ago, outside the
// ephemeral range, for a process that takes a port number (not a socket):
// an application told its PORT, or a test server.
func FreePort() (int, error) { return FreePorts(1) }

// FreePorts returns the first of n consecutive loopback ports that were
// all free a moment ago, outside the ephemeral range (a managed server
// takes two: its listen address and, by default, the next port for its
// peers; a demo takes a dozen).
func FreePorts(n int) (int, error) {
	for range 200 {
		p := freePortMin + rand.IntN(freePortMax-freePortMin+2-n)
		ok := true
		for i := 0; i < n && ok; i++ {
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+i)))
			if err != nil {
				ok = false
				continue
			}
			ln.Close()
		}
		if ok {
			return p, nil
		}
	}
	return 0, ErrNoFreePort
}
