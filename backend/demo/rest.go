package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// errNotFound is a 404 from the admin server.
var errNotFound = errors.New("demo: not found")

// rest is the few REST calls the demo makes to the admin server.
type rest struct {
	base  string // http://host:port
	token string
	hc    *http.Client
}

func newREST(base, token string) *rest {
	return &rest{base: base, token: token, hc: &http.Client{Timeout: 60 * time.Second}}
}

// do sends in (if not nil) as JSON and decodes a 2xx answer into out.
func (r *rest) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("demo: encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+"/api/v1"+path, body)
	if err != nil {
		return fmt.Errorf("demo: %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return fmt.Errorf("demo: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %s %s", errNotFound, method, path)
	}
	if resp.StatusCode/100 != 2 {
		var env struct {
			Error struct{ Code, Message, Field string } `json:"error"`
		}
		_ = json.Unmarshal(b, &env)
		return fmt.Errorf("demo: %s %s: status %d: %s %s", method, path, resp.StatusCode, env.Error.Code, env.Error.Message)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("demo: decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

// ensure creates the resource at collection unless GET collection/name finds it.
func (r *rest) ensure(ctx context.Context, collection, name string, def any) (bool, error) {
	err := r.do(ctx, http.MethodGet, collection+"/"+name, nil, nil)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, errNotFound) {
		return false, err
	}
	return true, r.do(ctx, http.MethodPost, collection, def, nil)
}

// topology is the part of GET /api/v1/topology the demo reads.
type topology struct {
	Clusters []struct {
		Name    string `json:"name"`
		Servers []struct {
			Name  string `json:"name"`
			State string `json:"state"`
			PID   int    `json:"pid"`
		} `json:"servers"`
		WebServers []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"webservers"`
	} `json:"clusters"`
}
