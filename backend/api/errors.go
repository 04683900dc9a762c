package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"tandem/backend/auth"
	"tandem/backend/domain"
)

// ErrorBody is the error envelope: {"error":{"code","message","field"}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail describes one error.
type ErrorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// Error codes of the envelope.
const (
	CodeBadRequest    = "bad_request"
	CodeInvalid       = "invalid"
	CodeNotFound      = "not_found"
	CodeConflict      = "conflict"
	CodeUnauthorized  = "unauthorized"
	CodeForbidden     = "forbidden"
	CodeUnavailable   = "unavailable"
	CodeTooLarge      = "too_large"
	CodeCommandFailed = "command_failed"
	CodeThrottled     = "too_many_attempts"
	CodeInternal      = "internal"
)

// badRequestError is malformed input (JSON, query parameters): 400.
type badRequestError struct {
	field, msg string
}

func (e *badRequestError) Error() string { return "bad request: " + e.msg }

func badRequest(field, msg string) error { return &badRequestError{field: field, msg: msg} }

// tooLargeError is a body over the limit: 413.
type tooLargeError struct{ limit int64 }

func (e *tooLargeError) Error() string { return "request body too large" }

// commandError is a node manager refusing or failing a command: 502.
type commandError struct{ msg string }

func (e *commandError) Error() string { return "command failed: " + e.msg }

const requestIDKey = "tandem.request_id"

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// requestID tags each request with an id (header X-Request-ID) for logs
// and 500 responses.
func requestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := newRequestID()
		c.Set(requestIDKey, id)
		c.Header("X-Request-ID", id)
		c.Next()
	}
}

// writeError is the one place that turns an error into a response.
func (h *handler) writeError(c *gin.Context, err error) {
	status, d := h.classify(err)
	if status == http.StatusInternalServerError {
		d.RequestID = c.GetString(requestIDKey)
		h.log.Error("api: internal error", "method", c.Request.Method, "path", c.FullPath(), "request_id", d.RequestID, "err", err)
	}
	if status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="tandem"`)
	}
	var th *auth.ThrottledError
	if errors.As(err, &th) {
		c.Header("Retry-After", strconv.Itoa(int(max(th.Wait.Round(time.Second), time.Second)/time.Second)))
	}
	c.AbortWithStatusJSON(status, ErrorBody{Error: d})
}

func (h *handler) classify(err error) (int, ErrorDetail) {
	var inv *domain.InvalidError
	var conf *domain.ConflictError
	var bad *badRequestError
	var big *tooLargeError
	var cmd *commandError
	var th *auth.ThrottledError
	switch {
	case errors.As(err, &th):
		return http.StatusTooManyRequests, ErrorDetail{Code: CodeThrottled, Message: th.Error()}
	case errors.As(err, &bad):
		return http.StatusBadRequest, ErrorDetail{Code: CodeBadRequest, Message: bad.msg, Field: bad.field}
	case errors.As(err, &big):
		return http.StatusRequestEntityTooLarge, ErrorDetail{Code: CodeTooLarge, Message: "request body is larger than the limit"}
	case errors.As(err, &inv):
		return http.StatusUnprocessableEntity, ErrorDetail{Code: CodeInvalid, Message: inv.Error(), Field: inv.Field}
	case errors.As(err, &conf):
		return http.StatusConflict, ErrorDetail{Code: CodeConflict, Message: conf.Message, Field: conf.Field}
	case errors.Is(err, domain.ErrConflict):
		return http.StatusConflict, ErrorDetail{Code: CodeConflict, Message: "conflict"}
	case errors.Is(err, domain.ErrNotFound):
		var nf *domain.NotFoundError
		msg := "not found"
		if errors.As(err, &nf) {
			msg = nf.Error()
		} else if errors.Is(err, errNoSuchSession) {
			msg = "no running server holds that session"
		}
		return http.StatusNotFound, ErrorDetail{Code: CodeNotFound, Message: msg}
	case errors.Is(err, domain.ErrUnauthorized):
		return http.StatusUnauthorized, ErrorDetail{Code: CodeUnauthorized, Message: "authentication required: send Authorization: Bearer TOKEN or log in"}
	case errors.Is(err, domain.ErrForbidden):
		return http.StatusForbidden, ErrorDetail{Code: CodeForbidden, Message: forbiddenMessage(err)}
	case errors.Is(err, domain.ErrUnavailable):
		return http.StatusServiceUnavailable, ErrorDetail{Code: CodeUnavailable, Message: "a required component is not available: " + unavailableWhat(err)}
	case errors.As(err, &cmd):
		return http.StatusBadGateway, ErrorDetail{Code: CodeCommandFailed, Message: cmd.Error()}
	}
	return http.StatusInternalServerError, ErrorDetail{Code: CodeInternal, Message: "internal error; see the admin server log for this request id"}
}

// forbiddenMessage says why without internal detail.
func forbiddenMessage(err error) string {
	var f *forbiddenError
	if errors.As(err, &f) {
		return f.msg
	}
	return "your role may not do this, or the request failed the CSRF/origin check"
}

type forbiddenError struct{ msg string }

func (e *forbiddenError) Error() string { return e.msg }
func (e *forbiddenError) Unwrap() error { return domain.ErrForbidden }

type unavailableError struct{ what string }

func (e *unavailableError) Error() string { return e.what + " is not available" }
func (e *unavailableError) Unwrap() error { return domain.ErrUnavailable }

func unavailable(what string) error { return &unavailableError{what: what} }

func unavailableWhat(err error) string {
	var u *unavailableError
	if errors.As(err, &u) {
		return u.what
	}
	return "node or node manager unreachable"
}

// accessLog logs each request; the level follows the status.
func accessLog(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Next()
		st := c.Writer.Status()
		lvl := slog.LevelDebug
		switch {
		case st >= 500:
			lvl = slog.LevelError
		case st >= 400:
			lvl = slog.LevelWarn
		}
		// The path, never the query string: no secrets travel there, but
		// we keep logs free of anything a caller typed.
		log.Log(c.Request.Context(), lvl, "api: request", "method", c.Request.Method, "path", c.Request.URL.Path,
			"status", st, "request_id", c.GetString(requestIDKey))
	}
}
