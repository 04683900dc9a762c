// Package client is a typed Go client of Tandem's admin REST API (/api/v1),
// for tests, the demo and scripts. Errors from the server are *APIError.
//
//	c := client.New("http://127.0.0.1:9736", token)
//	cl, err := c.CreateCluster(ctx, domain.Cluster{Name: "prod"})
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"tandem/backend/domain"
)

// APIError is a non-2xx answer with the API's error envelope.
type APIError struct {
	Status  int
	Code    string
	Message string
	Field   string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("tandem api: %d %s: %s", e.Status, e.Code, e.Message)
	if e.Field != "" {
		s += " (field " + e.Field + ")"
	}
	return s
}

// Is lets errors.Is match the domain sentinels by status.
func (e *APIError) Is(target error) bool {
	switch target {
	case domain.ErrNotFound:
		return e.Status == http.StatusNotFound
	case domain.ErrConflict:
		return e.Status == http.StatusConflict
	case domain.ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case domain.ErrForbidden:
		return e.Status == http.StatusForbidden
	case domain.ErrUnavailable:
		return e.Status == http.StatusServiceUnavailable
	}
	return false
}

// Client talks to one admin server. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	// HTTP is the underlying client; replace it to tune timeouts or TLS.
	HTTP *http.Client
}

// New returns a client of the admin server at baseURL (e.g.
// "http://127.0.0.1:9736") using the API token as bearer.
func New(baseURL, token string) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, HTTP: &http.Client{Timeout: 60 * time.Second}}
}

// do sends a request to path (under the base URL) and decodes a 2xx JSON
// answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	if in == nil {
		return c.doRaw(ctx, method, path, "", nil, out)
	}
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("client: encode: %w", err)
	}
	return c.doRaw(ctx, method, path, "application/json", bytes.NewReader(b), out)
}

// doRaw is do with a body of contentType read from body (nil: none).
func (c *Client) doRaw(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("client: %s %s: read: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var env struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
				Field   string `json:"field"`
			} `json:"error"`
		}
		ae := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, &env) == nil && env.Error.Code != "" {
			ae.Code, ae.Message, ae.Field = env.Error.Code, env.Error.Message, env.Error.Field
		} else {
			ae.Code, ae.Message = "http_"+strconv.Itoa(resp.StatusCode), strings.TrimSpace(string(data))
		}
		return ae
	}
	if out == nil || len(data) == 0 {
		return nil
	}
	if raw, ok := out.(*[]byte); ok { // a non-JSON answer, e.g. haproxy.cfg
		*raw = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("client: %s %s: decode: %w", method, path, err)
	}
	return nil
}

func esc(s string) string { return url.PathEscape(s) }

// Healthz returns nil when the admin server answers /healthz with 200.
func (c *Client) Healthz(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("client: healthz: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &APIError{Status: resp.StatusCode, Code: "unhealthy", Message: "healthz answered " + resp.Status}
	}
	return nil
}

// IsNotFound reports whether err is a 404 from the API.
func IsNotFound(err error) bool { return errors.Is(err, domain.ErrNotFound) }
