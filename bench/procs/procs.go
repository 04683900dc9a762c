// Package procs is what the benchmark programs share about the processes
// they start and the machine they measure on: waiting until a process
// answers, and the load average printed beside every figure.
package procs

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// WaitHTTP polls url until it answers 200, for up to 30 s.
func WaitHTTP(url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer 200 within 30 s (last: %v)", url, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a starting process
	}
}

// LoadAverage is the machine's one-minute load average, "?" if unknown.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}
