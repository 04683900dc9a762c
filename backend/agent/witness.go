package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Witness asks the admin server whether server (a silent peer of this
// managed server) is down there too: the tie-breaker of a network
// partition (replication.Config.Witness). The node certificate, or the
// node token on plain HTTP, authenticates the call.
func (a *Agent) Witness(ctx context.Context, server string) (bool, error) {
	base := strings.TrimRight(a.cfg.AdminURL, "/")
	if rest, ok := strings.CutPrefix(base, "ws"); ok {
		base = "http" + rest // ws:// and wss:// name the same server
	}
	body, _ := json.Marshal(map[string]string{"server": server})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/nodes/witness", bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("agent: witness: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if a.id == nil {
		req.Header.Set("Authorization", "Bearer "+a.cfg.NodeToken)
	}
	resp, err := a.HTTPClient(5 * time.Second).Do(req)
	if err != nil {
		return false, fmt.Errorf("agent: witness: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("agent: witness: status %d", resp.StatusCode)
	}
	var out struct {
		Down bool `json:"down"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return false, fmt.Errorf("agent: witness: %w", err)
	}
	return out.Down, nil
}
