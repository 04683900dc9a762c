// Package auth authenticates requests to the admin server: API tokens
// (random, shown once, stored as SHA-256), console users (bcrypt passwords)
// with cookie sessions and CSRF protection, roles, the node token, and the
// first-start bootstrap. Credentials come only from the Authorization header
// or the session cookie, never from a query string.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/crypto/bcrypt"

	"tandem/backend/domain"
	"tandem/backend/store"
)

// CookieName is the console session cookie.
const CookieName = "tandem_session"

// CSRFHeader carries the session's CSRF token on cookie-authenticated
// state-changing requests.
const CSRFHeader = "X-CSRF-Token"

// SessionTTL is how long a console session lasts.
const SessionTTL = 12 * time.Hour

// Store is what auth needs from the database.
type Store interface {
	TokenByHash(ctx context.Context, hash string) (domain.Token, error)
	TouchToken(ctx context.Context, id int64) error
	User(ctx context.Context, name string) (domain.User, string, error)
	CreateConsoleSession(ctx context.Context, hash, user, csrf string, expires time.Time) error
	ConsoleSessionByHash(ctx context.Context, hash string) (store.ConsoleSession, error)
	DeleteConsoleSession(ctx context.Context, hash string) error
	// RecordAudit writes one audit entry (a login lockout).
	RecordAudit(ctx context.Context, actor, action, target string, detail any) error
	// CertRevoked reports whether a node certificate was revoked (or never issued).
	CertRevoked(ctx context.Context, serial string) (bool, error)
}

// NewSecret returns a random secret (32 bytes, hex) and its stored hash.
func NewSecret() (secret, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("auth: random: %w", err)
	}
	secret = hex.EncodeToString(b[:])
	return secret, HashSecret(secret), nil
}

// HashSecret is the stored form of a token or cookie value: hex SHA-256.
// The secrets are 256 random bits, so a fast hash is enough.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// HashPassword hashes a console password with bcrypt.
func HashPassword(pw string) (string, error) {
	if len(pw) < 8 {
		return "", domain.Invalid("password", "must be at least 8 characters")
	}
	if len(pw) > 72 {
		return "", domain.Invalid("password", "must be at most 72 bytes")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("auth: hash password: %w", err)
	}
	return string(h), nil
}

// Authenticator checks credentials. It is safe for concurrent use.
type Authenticator struct {
	store     Store
	nodeToken []byte
	nodeCerts bool // node requests need a certificate (TLS on)
	cop       *http.CrossOriginProtection
	logger    *slog.Logger
	now       func() time.Time

	// touched remembers when this process last recorded each token's use
	// (token id → time.Time), so reads do not become writes on every request.
	touched sync.Map

	logins   throttle
	onLocked func(ctx context.Context, e domain.Event) // records auth.locked; may be nil
}

// OnLockout sets where a login lockout's event goes (the event recorder).
func (a *Authenticator) OnLockout(record func(ctx context.Context, e domain.Event)) {
	a.onLocked = record
}

// touchEvery is how often a token's last_used is refreshed.
const touchEvery = time.Minute

// New returns an Authenticator over st; nodeToken is the domain's node token.
func New(st Store, nodeToken string, logger *slog.Logger) *Authenticator {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Authenticator{store: st, nodeToken: []byte(nodeToken), cop: http.NewCrossOriginProtection(), logger: logger, now: time.Now}
}

// TrustOrigin allows cookie-authenticated writes from another origin
// (e.g. "https://console.example.com"), for a console behind a proxy.
func (a *Authenticator) TrustOrigin(origin string) error {
	if err := a.cop.AddTrustedOrigin(origin); err != nil {
		return fmt.Errorf("auth: trusted origin: %w", err)
	}
	return nil
}

// Identity is an authenticated caller.
type Identity struct {
	domain.Principal
	// Session is set for cookie-authenticated requests.
	Session *store.ConsoleSession
	// TokenID is set for bearer-authenticated requests.
	TokenID int64
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true // present but unusable: reject, do not fall back to the cookie
	}
	return strings.TrimSpace(tok), true
}

// Authenticate identifies the caller of r: a bearer token, else the session
// cookie (then, for state-changing methods, the CSRF header and a
// cross-origin check are required). No credential or a bad one:
// ErrUnauthorized; a failed CSRF or origin check: ErrForbidden.
func (a *Authenticator) Authenticate(r *http.Request) (Identity, error) {
	ctx := r.Context()
	if tok, ok := bearer(r); ok {
		if tok == "" {
			return Identity{}, fmt.Errorf("auth: malformed authorization header: %w", domain.ErrUnauthorized)
		}
		t, err := a.store.TokenByHash(ctx, HashSecret(tok))
		if errors.Is(err, domain.ErrNotFound) {
			return Identity{}, fmt.Errorf("auth: unknown token: %w", domain.ErrUnauthorized)
		}
		if err != nil {
			return Identity{}, err
		}
		if t.Expired(a.now()) {
			return Identity{}, fmt.Errorf("auth: expired token: %w", domain.ErrUnauthorized)
		}
		return Identity{Principal: domain.Principal{Name: t.Name, Role: t.Role}, TokenID: t.ID}, nil
	}
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return Identity{}, fmt.Errorf("auth: no credentials: %w", domain.ErrUnauthorized)
	}
	sess, err := a.store.ConsoleSessionByHash(ctx, HashSecret(c.Value))
	if errors.Is(err, domain.ErrNotFound) {
		return Identity{}, fmt.Errorf("auth: unknown or expired session: %w", domain.ErrUnauthorized)
	}
	if err != nil {
		return Identity{}, err
	}
	if !safeMethod(r.Method) {
		if err := a.cop.Check(r); err != nil {
			return Identity{}, fmt.Errorf("auth: cross-origin request refused: %w", domain.ErrForbidden)
		}
		got := r.Header.Get(CSRFHeader)
		if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRFToken)) != 1 {
			return Identity{}, fmt.Errorf("auth: missing or wrong %s header: %w", CSRFHeader, domain.ErrForbidden)
		}
	}
	return Identity{Principal: domain.Principal{Name: sess.User.Name, Role: sess.User.Role}, Session: &sess}, nil
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func (a *Authenticator) touch(ctx context.Context, id Identity) {
	now := a.now()
	if last, ok := a.touched.Load(id.TokenID); ok && now.Sub(last.(time.Time)) < touchEvery {
		return
	}
	a.touched.Store(id.TokenID, now)
	if err := a.store.TouchToken(ctx, id.TokenID); err != nil {
		a.logger.Warn("auth: record token use", "token", id.Name, "err", err)
	}
}

// CheckEnrol reports whether r carries the node token as its bearer: the
// secret a node enrols with (and, on a plain-HTTP admin server, its only
// credential).
func (a *Authenticator) CheckEnrol(r *http.Request) error {
	tok, ok := bearer(r)
	if !ok || tok == "" || len(a.nodeToken) == 0 || subtle.ConstantTimeCompare([]byte(tok), a.nodeToken) != 1 {
		return fmt.Errorf("auth: node token required: %w", domain.ErrUnauthorized)
	}
	return nil
}

// RequireNodeCerts makes node requests authenticate with a certificate of
// the domain CA that was not revoked (the admin server serves TLS); the
// node token alone is then only good for enrolling.
func (a *Authenticator) RequireNodeCerts() { a.nodeCerts = true }

// CheckNode authenticates a node's request: with its certificate when the
// admin server serves TLS (its name is returned), else with the node token
// (name "").
func (a *Authenticator) CheckNode(r *http.Request) (string, error) {
	if !a.nodeCerts {
		return "", a.CheckEnrol(r)
	}
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return "", fmt.Errorf("auth: a node certificate of this domain is required (enrol with the node token first): %w", domain.ErrUnauthorized)
	}
	leaf := r.TLS.VerifiedChains[0][0]
	revoked, err := a.store.CertRevoked(r.Context(), leaf.SerialNumber.Text(16))
	if err != nil {
		return "", err
	}
	if revoked {
		return "", fmt.Errorf("auth: the certificate of %q is revoked: %w", leaf.Subject.CommonName, domain.ErrUnauthorized)
	}
	return leaf.Subject.CommonName, nil
}

// Login checks a user's password, starts a console session and sets its
// cookie on w. It returns the user and the session's CSRF token.
func (a *Authenticator) Login(w http.ResponseWriter, r *http.Request, name, password string) (domain.User, string, error) {
	ctx := r.Context()
	if err := a.cop.Check(r); err != nil {
		return domain.User{}, "", fmt.Errorf("auth: cross-origin login refused: %w", domain.ErrForbidden)
	}
	userKey, addrKey := "user:"+name, "addr:"+clientAddr(r)
	now := a.now()
	if wait := max(a.logins.wait(userKey, now), a.logins.wait(addrKey, now)); wait > 0 {
		// Locked: refused without checking the password (no bcrypt work).
		return domain.User{}, "", &ThrottledError{Wait: wait}
	}
	u, hash, err := a.store.User(ctx, name)
	if err != nil && !errors.Is(err, domain.ErrNotFound) {
		return domain.User{}, "", err
	}
	if err != nil {
		// Spend the same time as a wrong password, so names cannot be probed.
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		a.loginFailed(ctx, name, clientAddr(r), userKey, addrKey)
		return domain.User{}, "", fmt.Errorf("auth: bad user name or password: %w", domain.ErrUnauthorized)
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		a.loginFailed(ctx, name, clientAddr(r), userKey, addrKey)
		return domain.User{}, "", fmt.Errorf("auth: bad user name or password: %w", domain.ErrUnauthorized)
	}
	a.logins.ok(userKey)
	a.logins.ok(addrKey)
	value, valueHash, err := NewSecret()
	if err != nil {
		return domain.User{}, "", err
	}
	csrf, _, err := NewSecret()
	if err != nil {
		return domain.User{}, "", err
	}
	expires := a.now().Add(SessionTTL)
	if err := a.store.CreateConsoleSession(ctx, valueHash, u.Name, csrf, expires); err != nil {
		return domain.User{}, "", err
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: value, Path: "/", Expires: expires, MaxAge: int(SessionTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	return u, csrf, nil
}

// Logout ends the request's console session, if any, and clears the cookie.
func (a *Authenticator) Logout(w http.ResponseWriter, r *http.Request) error {
	if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
		if err := a.store.DeleteConsoleSession(r.Context(), HashSecret(c.Value)); err != nil {
			return err
		}
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	return nil
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("tandem-dummy-password"), bcrypt.DefaultCost)

const identityKey = "tandem.identity"

// Middleware authenticates every request; on failure it calls onErr (which
// writes the response) and aborts.
func (a *Authenticator) Middleware(onErr func(*gin.Context, error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		id, err := a.Authenticate(c.Request)
		if err != nil {
			onErr(c, err)
			c.Abort()
			return
		}
		c.Set(identityKey, id)
		c.Next()
		// Record the token's use only for requests that succeeded, so a
		// rejected request leaves the database as it was.
		if id.TokenID != 0 && c.Writer.Status() < 400 {
			a.touch(c.Request.Context(), id)
		}
	}
}

// Require lets the request through only when its principal's role has at
// least need's rights; otherwise onErr gets ErrForbidden.
func Require(need string, onErr func(*gin.Context, error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		id, ok := IdentityFrom(c)
		if !ok {
			onErr(c, fmt.Errorf("auth: not authenticated: %w", domain.ErrUnauthorized))
			c.Abort()
			return
		}
		if !domain.RoleAllows(id.Role, need) {
			onErr(c, fmt.Errorf("auth: role %s may not do this (needs %s): %w", id.Role, need, domain.ErrForbidden))
			c.Abort()
			return
		}
		c.Next()
	}
}

// IdentityFrom returns the identity the middleware stored on c.
func IdentityFrom(c *gin.Context) (Identity, bool) {
	v, ok := c.Get(identityKey)
	if !ok {
		return Identity{}, false
	}
	id, ok := v.(Identity)
	return id, ok
}

// loginFailed counts a failed login for the user name and the address;
// a lockout that starts is logged, audited and recorded as an event.
func (a *Authenticator) loginFailed(ctx context.Context, name, addr, userKey, addrKey string) {
	now := a.now()
	for _, k := range []struct{ key, what string }{{userKey, "user " + name}, {addrKey, "address " + addr}} {
		d := a.logins.fail(k.key, now)
		if d == 0 {
			continue
		}
		msg := fmt.Sprintf("console login locked for %s for %s after %d or more failed attempts", k.what, d.Round(time.Second), MaxLoginFailures)
		a.logger.Warn("auth: login locked", "target", k.what, "for", d)
		detail := map[string]any{"user": name, "address": addr, "locked_seconds": int(d / time.Second)}
		if err := a.store.RecordAudit(ctx, "anonymous", "login.locked", k.what, detail); err != nil {
			a.logger.Error("auth: audit of a login lockout", "err", err)
		}
		if a.onLocked != nil {
			a.onLocked(ctx, domain.Event{Type: domain.EventLoginLocked, Message: msg})
		}
	}
}

// clientAddr is the client's IP address (the connection's, not a header a
// client could set).
func clientAddr(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}
