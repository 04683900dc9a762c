package session

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tandem/backend/domain"
	"tandem/backend/pki"
	"tandem/backend/route"
)

// Header names the middleware reads or writes.
const (
	// HeaderForwarded marks a request a peer forwarded to the session's
	// owner; it is never forwarded again.
	HeaderForwarded = "X-Tandem-Forwarded"
	// HeaderPeerAuth carries the node token on a forward over plain HTTP
	// (on mutual TLS the certificate is the credential); the owner's
	// internal listener checks and removes it before the application.
	HeaderPeerAuth = "X-Tandem-Peer-Auth"
	// HeaderReplication is "degraded" when a sync write is held by one
	// server only.
	HeaderReplication = "X-Tandem-Replication"
	// HeaderRequestID is set by the web server, the same on every retry of
	// one client request. The reply to a request that wrote the session is
	// kept in the session under that id, so a retry that reaches the new
	// owner after the old one applied the write (and died before answering)
	// is answered with the stored reply instead of being applied twice.
	HeaderRequestID = "X-Tandem-Request-Id"
	// HeaderReplayed marks a reply served from the session's stored reply.
	HeaderReplayed = "X-Tandem-Replayed"
	// HeaderResent is set by the web server on an attempt that follows one
	// it gave up on after sending it (the member went down or silent, or
	// did not answer): that earlier attempt may still be applied later, so
	// a write applied from a resend keeps its request id in resentKey.
	HeaderResent = "X-Tandem-Resent"
)

// replyKey is the reserved session attribute holding the last reply.
const replyKey = "_tandem.reply"

// seenKey is the reserved session attribute holding the request ids of
// the last writes (space-separated, newest last). A request with one of
// them that is not the last was applied and answered already (a retry
// went to another server and the client moved on), but its first attempt
// was still in flight, e.g. inside a member that was paused: it is
// refused, never applied a second time.
const seenKey = "_tandem.seen"

// maxSeen is how many request ids seenKey keeps.
const maxSeen = 8

// resentKey is the reserved session attribute holding the request ids of
// the last writes applied from a resend (HeaderResent), newest last. The
// first attempt of such a request was given up on by the web server but may
// still be applied much later, after far more than maxSeen writes: a member
// cut off the network holds it while the resend is applied at the session's
// new owner, and forwards it there once the link is back. The web server's
// close of that attempt's connection was lost in the cut, so ClientGone
// cannot tell. Resends are rare (a member went down), so these ids are
// kept long: a request with one of them is refused, never applied again.
const resentKey = "_tandem.resent"

// maxResent is how many request ids resentKey keeps.
const maxResent = 32

// maxStoredReply bounds a reply kept for retries; a retry of a write whose
// reply was larger (or streamed) is refused with 409 and X-Tandem-Replayed:
// not-kept, never applied again.
const maxStoredReply = 16 << 10

// Manager is the session middleware. Its configuration can change while it
// serves (SetConfig); it is safe for concurrent use.
type Manager struct {
	cfg      atomic.Pointer[domain.SessionConfig]
	store    Store
	logger   *slog.Logger
	proxy    *httputil.ReverseProxy
	draining atomic.Bool
	mu       sync.Mutex
	oldNames []string // previous cookie names, newest first
}

// NewManager returns a middleware keeping sessions in store.
func NewManager(cfg domain.SessionConfig, store Store, logger *slog.Logger) *Manager {
	m := &Manager{store: store, logger: logger}
	m.cfg.Store(&cfg)
	m.SetForwarding(Forwarding{})
	return m
}

// Forwarding is how a request reaches its session's owner: the peers'
// internal listener, over mutual TLS (TLS set) or plain HTTP with the
// node token in HeaderPeerAuth.
type Forwarding struct {
	TLS   *tls.Config // nil: plain HTTP
	Token string      // plain HTTP's credential
}

// SetForwarding sets how forwarded requests travel; call it before serving.
func (m *Manager) SetForwarding(f Forwarding) {
	scheme := "http"
	if f.TLS != nil {
		scheme = "https"
	}
	tr := &http.Transport{
		DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		// No reused connections: Go's Transport silently re-sends a GET
		// whose reused connection broke after the request was written, and
		// a forwarded session write must never be applied twice.
		DisableKeepAlives: true,
		TLSClientConfig:   f.TLS,
	}
	logger := m.logger
	m.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			fe, _ := pr.In.Context().Value(fwdKey{}).(*ForwardError)
			pr.Out.URL.Scheme = scheme
			pr.Out.URL.Host = fe.Addr
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Set(HeaderForwarded, "1")
			pr.Out.Header.Del(HeaderPeerAuth)
			if f.TLS == nil && f.Token != "" {
				pr.Out.Header.Set(HeaderPeerAuth, "Bearer "+f.Token)
			}
		},
		// On mutual TLS the answer must come from the owner named, not
		// from another member holding a domain certificate.
		ModifyResponse: func(resp *http.Response) error {
			fe, _ := resp.Request.Context().Value(fwdKey{}).(*ForwardError)
			if f.TLS != nil && pki.PeerName(resp.TLS) != fe.Server {
				return fmt.Errorf("session: the forward to %s was answered by another certificate", fe.Server)
			}
			return nil
		},
		Transport: tr,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			logger.Warn("session: forward failed", "err", err)
			http.Error(w, "session owner unreachable, retry", http.StatusServiceUnavailable)
		},
	}
}

type fwdKey struct{}

// SetConfig applies a new effective session configuration. When the
// cookie name changes, cookies under the previous names are still read
// (and answered with the new name), so a rename loses no session.
func (m *Manager) SetConfig(cfg domain.SessionConfig) {
	old := m.cfg.Load()
	if old != nil && old.Cookie.Name != cfg.Cookie.Name {
		m.mu.Lock()
		names := []string{old.Cookie.Name}
		for _, n := range m.oldNames {
			if n != cfg.Cookie.Name && n != old.Cookie.Name && len(names) < 4 {
				names = append(names, n)
			}
		}
		m.oldNames = names
		m.mu.Unlock()
	}
	m.cfg.Store(&cfg)
}

func (m *Manager) previousNames() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.oldNames
}

// Config returns the configuration in force.
func (m *Manager) Config() domain.SessionConfig { return *m.cfg.Load() }

// SetDraining makes the manager refuse new sessions (graceful stop).
func (m *Manager) SetDraining(on bool) { m.draining.Store(on) }

// lookup finds the session value a request carries: the ;jsessionid= path
// parameter first, then the cookie. A malformed value counts as none.
func (m *Manager) lookup(r *http.Request, cfg *domain.SessionConfig) (v route.Value, has, oldName bool) {
	if raw, stripped, ok := route.FromPath(r.URL.Path); ok {
		r.URL.Path = stripped
		r.URL.RawPath = ""
		if v, err := route.Parse(raw); err == nil {
			return v, true, false
		}
	}
	cookies := r.Cookies()
	for _, c := range cookies {
		if c.Name != cfg.Cookie.Name {
			continue
		}
		if v, err := route.Parse(c.Value); err == nil {
			return v, true, false
		}
	}
	for _, name := range m.previousNames() {
		for _, c := range cookies {
			if c.Name != name {
				continue
			}
			if v, err := route.Parse(c.Value); err == nil {
				return v, true, true
			}
		}
	}
	return route.Value{}, false, false
}

// Cookie builds the session cookie for value with every configured field.
func Cookie(cfg domain.SessionConfig, value string) *http.Cookie {
	c := &http.Cookie{
		Name:     cfg.Cookie.Name,
		Value:    value,
		Domain:   cfg.Cookie.Domain,
		Path:     cfg.Cookie.Path,
		Secure:   cfg.Cookie.Secure,
		HttpOnly: cfg.Cookie.HTTPOnly,
		MaxAge:   cfg.Cookie.MaxAgeSeconds,
	}
	switch cfg.Cookie.SameSite {
	case "Strict":
		c.SameSite = http.SameSiteStrictMode
	case "None":
		c.SameSite = http.SameSiteNoneMode
	case "Lax":
		c.SameSite = http.SameSiteLaxMode
	}
	return c
}

// Wrap returns h with a session in every request's context. A request
// without a session gets a new one, stored even if h leaves it empty.
func (m *Manager) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.serve(w, r, h, false)
	})
}

// WrapLazy is Wrap, except that a new session the handler leaves empty is
// not stored and gets no cookie (Tomcat's getSession on demand): health
// checks, assets and bots cost no session.
func (m *Manager) WrapLazy(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.serve(w, r, h, true)
	})
}

func (m *Manager) serve(w http.ResponseWriter, r *http.Request, h http.Handler, lazy bool) {
	cfg := m.cfg.Load()
	ctx := r.Context()
	val, has, oldName := m.lookup(r, cfg)
	// Every request that names a session carries a request id (the web
	// server's, or one made here), so that a forward to the owner, or a
	// resend of a request whose first attempt was applied, is answered
	// from the reply stored with the write, never applied twice.
	rid := r.Header.Get(HeaderRequestID)
	if has && (rid == "" || len(rid) > 128 || strings.ContainsAny(rid, " \t")) {
		rid = route.NewID()
		r.Header.Set(HeaderRequestID, rid)
	}
	var txn Txn
	var err error
	if has {
		txn, err = m.store.Get(ctx, Lookup{ID: val.ID, Primary: val.Primary, Backup: val.Backup, Forwarded: r.Header.Get(HeaderForwarded) != ""})
		var fe *ForwardError
		switch {
		case err == nil:
		case errors.As(err, &fe):
			m.forward(w, r, fe)
			return
		case errors.Is(err, ErrNotFound):
			has = false
		case errors.Is(err, ErrUnavailable):
			http.Error(w, "session temporarily unavailable, retry", http.StatusServiceUnavailable)
			return
		default:
			m.logger.Error("session: get", "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
	}
	if !has {
		if m.draining.Load() {
			http.Error(w, "server is stopping and takes no new sessions", http.StatusServiceUnavailable)
			return
		}
		txn, err = m.store.New(ctx, cfg.MaxSessions)
		switch {
		case err == nil:
		case errors.Is(err, ErrTooManySessions):
			http.Error(w, "too many sessions on this server (max_sessions "+strconv.Itoa(cfg.MaxSessions)+" reached); try again later", http.StatusServiceUnavailable)
			return
		case errors.Is(err, ErrDraining):
			http.Error(w, "server is stopping and takes no new sessions", http.StatusServiceUnavailable)
			return
		default:
			m.logger.Error("session: new", "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
	}
	rec := txn.Record()
	s := &Session{rec: rec, isNew: !has}
	if cfg.TrackingMode == domain.TrackingURL {
		s.encode = func(p string) string {
			pr, bk := txn.Routes()
			return route.AddToPath(p, route.Value{ID: rec.ID, Primary: pr, Backup: bk}.String())
		}
	}
	if has {
		if status, hdr, body, ok := storedReply(rec, rid); ok {
			m.replay(w, r, txn, cfg, val, oldName, status, hdr, body)
			return
		}
		if seenBefore(rec, seenKey, rid) || seenBefore(rec, resentKey, rid) {
			txn.Abort()
			if ids := strings.Fields(rec.Attrs[seenKey].S); len(ids) > 0 && ids[len(ids)-1] == rid {
				// The last write, whose answer streamed or was too large to keep.
				w.Header().Set(HeaderReplayed, "not-kept")
				http.Error(w, "this request was applied already; its answer (streamed, or over 16 KiB) was not kept for a retry", http.StatusConflict)
				return
			}
			w.Header().Set(HeaderReplayed, "superseded")
			http.Error(w, "this request was already applied and answered; a later request of the session followed it", http.StatusConflict)
			return
		}
	}
	if has && ClientGone(r) {
		// Its sender gave up on it and may have resent it elsewhere.
		txn.Abort()
		http.Error(w, "the client closed the connection; the request was not applied", http.StatusServiceUnavailable)
		return
	}
	s.max = cfg.MaxSessionBytes
	buf := &bufferedWriter{header: make(http.Header), status: http.StatusOK, out: w}
	buf.finish = func() bool {
		return m.finish(w, r, &finishing{txn: txn, s: s, buf: buf, cfg: cfg, val: val, has: has, oldName: oldName, rid: rid, lazy: lazy})
	}
	func() {
		defer func() {
			if p := recover(); p != nil {
				if !buf.streaming {
					txn.Abort()
				}
				panic(p)
			}
		}()
		h.ServeHTTP(buf, r.WithContext(context.WithValue(ctx, ctxKey{}, s)))
	}()
	if !buf.streaming {
		buf.finish()
	}
}

// finishing is one request's state when its session is stored.
type finishing struct {
	txn     Txn
	s       *Session
	buf     *bufferedWriter
	cfg     *domain.SessionConfig
	val     route.Value
	has     bool
	oldName bool
	rid     string
	lazy    bool // an unused new session is dropped
}

// finish stores the session and writes the answer's head and the body
// buffered so far. It runs once per request: at the handler's end, or when
// the answer starts streaming (a Flush, or a body over streamAfter); then
// the reply is not kept for retries. It reports whether the answer may go
// on (false: an error answer was written instead).
func (m *Manager) finish(w http.ResponseWriter, r *http.Request, f *finishing) bool {
	s, buf, rec := f.s, f.buf, f.s.rec
	if f.rid != "" && s.changed && !s.invalid {
		if !buf.streaming && buf.body.Len() <= maxStoredReply {
			s.set(replyKey, Value{Kind: KindBytes, S: encodeReply(f.rid, buf)})
		} else {
			s.Delete(replyKey) // a stale reply must not answer a later retry
		}
		s.set(seenKey, Value{Kind: KindString, S: addSeen(rec.Attrs[seenKey].S, f.rid, maxSeen)})
		if r.Header.Get(HeaderResent) != "" {
			s.set(resentKey, Value{Kind: KindString, S: addSeen(rec.Attrs[resentKey].S, f.rid, maxResent)})
		}
	}
	if s.changed && s.max > 0 && s.Size() > s.max {
		f.txn.Abort()
		m.logger.Warn("session: write refused: session over max_session_bytes", "session", rec.ID, "bytes", s.Size(), "limit", s.max)
		http.Error(w, "the application's session change was refused: session over max_session_bytes ("+strconv.Itoa(s.Size())+" > "+strconv.Itoa(s.max)+"); the session is unchanged", http.StatusBadGateway)
		return false
	}
	if f.lazy && !f.has && !s.changed {
		f.txn.Abort()
		f.buf.writeTo(w)
		return true
	}
	if f.has && s.changed && ClientGone(r) {
		f.txn.Abort()
		m.logger.Info("session: write not applied: its client gave up on it", "session", rec.ID)
		http.Error(w, "the client closed the connection; the request was not applied", http.StatusServiceUnavailable)
		return false
	}
	res, err := f.txn.Commit(r.Context(), s.changed || !f.has)
	if buf.streaming {
		// The handler goes on writing: its later changes go to a copy.
		s.rec, s.committed = rec.Clone(), true
	}
	if err != nil {
		var fe *ForwardError
		if errors.As(err, &fe) {
			// The session moved while we ran: its new owner took it over
			// from a copy, which may hold this very write (an earlier try
			// of our replication reached it, its answer did not come
			// back), and the request's sender may have given up on us and
			// resent it there long ago (our link to it was cut, so its
			// close never reached us). Redoing it at the owner could apply
			// it twice; a sender still waiting resends it, with the same
			// request id, on this 503.
			http.Error(w, "the session moved to another server while this request ran; it was not applied here, retry", http.StatusServiceUnavailable)
			return false
		}
		if errors.Is(err, ErrUnavailable) {
			http.Error(w, "session temporarily unavailable, retry", http.StatusServiceUnavailable)
			return false
		}
		m.logger.Error("session: commit", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return false
	}
	cur := route.Value{ID: rec.ID, Primary: res.Primary, Backup: res.Backup}
	if f.cfg.TrackingMode == domain.TrackingCookie && (!f.has || f.oldName || f.val.Primary != res.Primary || f.val.Backup != res.Backup || f.val.ID != rec.ID) {
		http.SetCookie(w, Cookie(*f.cfg, cur.String()))
	}
	if res.Degraded {
		w.Header().Set(HeaderReplication, "degraded")
	}
	buf.writeTo(w)
	return true
}

// replay answers a retried request with the reply stored when it was first
// applied; the application's data is not changed again. The request id
// goes to resentKey: an id that came twice may come a third time, from an
// attempt held long in a member cut off the network.
func (m *Manager) replay(w http.ResponseWriter, r *http.Request, txn Txn, cfg *domain.SessionConfig, val route.Value, oldName bool, status int, hdr http.Header, body []byte) {
	rec, rid := txn.Record(), r.Header.Get(HeaderRequestID)
	mark := !seenBefore(rec, resentKey, rid)
	if mark {
		rec.Attrs[resentKey] = Value{Kind: KindString, S: addSeen(rec.Attrs[resentKey].S, rid, maxResent)}
	}
	res, err := txn.Commit(r.Context(), mark)
	if err != nil {
		http.Error(w, "session temporarily unavailable, retry", http.StatusServiceUnavailable)
		return
	}
	cur := route.Value{ID: val.ID, Primary: res.Primary, Backup: res.Backup}
	for k, vs := range hdr {
		if k != "Set-Cookie" {
			w.Header()[k] = vs
		}
	}
	if cfg.TrackingMode == domain.TrackingCookie && (oldName || val.Primary != res.Primary || val.Backup != res.Backup) {
		http.SetCookie(w, Cookie(*cfg, cur.String()))
	}
	w.Header().Set(HeaderReplayed, "1")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// encodeReply stores a reply as: request id, LF, status, LF, the header
// block in wire format, CRLF, the body.
func encodeReply(rid string, b *bufferedWriter) string {
	var out bytes.Buffer
	out.WriteString(rid)
	out.WriteByte('\n')
	out.WriteString(strconv.Itoa(b.status))
	out.WriteByte('\n')
	_ = b.header.Write(&out)
	out.WriteString("\r\n")
	out.Write(b.body.Bytes())
	return out.String()
}

// seenBefore reports whether rid is in the request id list kept in
// attribute key (seenKey or resentKey).
func seenBefore(rec *Record, key, rid string) bool {
	v, ok := rec.Attrs[key]
	if !ok || rid == "" {
		return false
	}
	for _, id := range strings.Fields(v.S) {
		if id == rid {
			return true
		}
	}
	return false
}

// addSeen appends rid to the space-separated list seen, keeping the last keep.
func addSeen(seen, rid string, keep int) string {
	ids := append(strings.Fields(seen), rid)
	if len(ids) > keep {
		ids = ids[len(ids)-keep:]
	}
	return strings.Join(ids, " ")
}

// storedReply returns the reply kept for request id rid, if any.
func storedReply(rec *Record, rid string) (int, http.Header, []byte, bool) {
	v, ok := rec.Attrs[replyKey]
	if !ok || v.Kind != KindBytes || !strings.HasPrefix(v.S, rid+"\n") {
		return 0, nil, nil, false
	}
	rest := v.S[len(rid)+1:]
	line, rest, ok := strings.Cut(rest, "\n")
	status, err := strconv.Atoi(line)
	if !ok || err != nil || status < 100 || status > 599 {
		return 0, nil, nil, false
	}
	tr := textproto.NewReader(bufio.NewReader(strings.NewReader(rest)))
	mh, err := tr.ReadMIMEHeader()
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, nil, nil, false
	}
	body, _ := io.ReadAll(tr.R)
	return status, http.Header(mh), body, true
}

func (m *Manager) forward(w http.ResponseWriter, r *http.Request, fe *ForwardError) {
	if r.Header.Get(HeaderForwarded) != "" {
		http.Error(w, "session temporarily unavailable, retry", http.StatusServiceUnavailable)
		return
	}
	if ClientGone(r) {
		// Its sender gave up (it may have resent the request elsewhere
		// while this process was frozen): the owner must not redo it.
		http.Error(w, "the client closed the connection; the request was not applied", http.StatusServiceUnavailable)
		return
	}
	m.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), fwdKey{}, fe)))
}

// streamAfter is how much of an answer is buffered before it streams.
const streamAfter = 64 << 10

// errStreamRefused is what a handler's writes get after the session could
// not be stored at the start of a streamed answer (an error was answered).
var errStreamRefused = errors.New("session: answer refused: the session could not be stored")

// bufferedWriter holds the response until the session is committed, so a
// sync write is acknowledged only after its backup holds it. An answer
// that flushes, or grows past streamAfter, streams: the session is
// committed then, and the rest goes straight to the client.
type bufferedWriter struct {
	header    http.Header
	status    int
	wrote     bool
	body      bytes.Buffer
	out       http.ResponseWriter
	finish    func() bool
	streaming bool
	refused   bool
}

func (b *bufferedWriter) Header() http.Header { return b.header }
func (b *bufferedWriter) WriteHeader(code int) {
	if !b.wrote {
		b.status, b.wrote = code, true
	}
}
func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.wrote = true
	if !b.streaming && b.body.Len()+len(p) > streamAfter {
		b.startStream()
	}
	if b.refused {
		return 0, errStreamRefused
	}
	if b.streaming {
		return b.out.Write(p)
	}
	return b.body.Write(p)
}

// startStream commits the session and sends what is buffered.
func (b *bufferedWriter) startStream() {
	b.streaming = true
	b.refused = !b.finish()
	b.body.Reset()
}

// writeTo sends the head and the body buffered so far.
func (b *bufferedWriter) writeTo(w http.ResponseWriter) {
	for k, vs := range b.header {
		w.Header()[k] = vs
	}
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body.Bytes())
}

// FlushError sends the answer so far (streaming it from now on).
func (b *bufferedWriter) FlushError() error {
	if !b.streaming {
		b.startStream()
	}
	if b.refused {
		return errStreamRefused
	}
	return http.NewResponseController(b.out).Flush()
}

// Flush implements http.Flusher.
func (b *bufferedWriter) Flush() { _ = b.FlushError() }
