package apphost

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"tandem/backend/session"
)

// The session header contract.
const (
	HeaderSessionID         = "Tandem-Session-Id"
	HeaderSession           = "Tandem-Session"
	HeaderSessionSet        = "Tandem-Session-Set"
	HeaderSessionInvalidate = "Tandem-Session-Invalidate"
	headerPrefix            = "Tandem-Session"
)

// readyWait bounds how long a request waits for an application that is
// (re)starting before it is answered 503.
const readyWait = 5 * time.Second

// hopHeaders are connection-level headers, never forwarded (RFC 9110 7.6.1).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// ServeHTTP proxies one request to the application; it runs inside the
// session middleware, whose session it sends and changes.
func (h *Host) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := session.FromContext(r.Context())
	if s == nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	inst, status, why := h.upstream(r.Context())
	if inst == nil {
		w.Header().Set("Retry-After", "1")
		http.Error(w, why, status)
		return
	}
	defer func() { h.release(inst) }() // roundTrip may move the request to another process
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = "http", inst.addr
	out.Host = r.Host
	cleanHeader(out.Header)
	out.Header.Del("Expect") // the body is here already: a 100 Continue from the app would end the exchange
	if r.ContentLength == 0 {
		out.Body = nil // a GET must not look like it has a body
	}
	out.Header.Set(HeaderSessionID, s.ID())
	out.Header.Set(HeaderSession, base64.RawURLEncoding.EncodeToString(s.AttributesJSON()))
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := r.Header.Get("X-Forwarded-For"); prior != "" {
			ip = prior + ", " + ip
		}
		out.Header.Set("X-Forwarded-For", ip)
	}
	if out.Header.Get("X-Forwarded-Host") == "" {
		out.Header.Set("X-Forwarded-Host", r.Host)
	}
	if out.Header.Get("X-Forwarded-Proto") == "" {
		out.Header.Set("X-Forwarded-Proto", "http")
	}

	var resp *http.Response
	var err error
	resp, inst, err = h.roundTrip(r.Context(), inst, out)
	if err != nil {
		switch {
		case r.Context().Err() != nil:
			return // the user went away
		case isTimeout(err):
			h.log.Warn("apphost: application did not answer in time", "path", r.URL.Path, "timeout_s", inst.spec.RequestTimeoutSeconds)
			http.Error(w, "the application did not answer within "+strconv.Itoa(inst.spec.RequestTimeoutSeconds)+" s", http.StatusGatewayTimeout)
		default:
			h.log.Warn("apphost: application unreachable", "path", r.URL.Path, "err", rootCause(err))
			w.Header().Set("Retry-After", "1")
			http.Error(w, "the application is not answering (restarting?); retry", http.StatusBadGateway)
		}
		return
	}
	defer resp.Body.Close()

	if err := applySession(s, resp.Header); err != nil {
		h.log.Warn("apphost: session change refused; session unchanged", "session", s.ID(), "path", r.URL.Path, "err", err)
		reason := "the application sent a malformed Tandem-Session-Set; the session is unchanged"
		if errors.Is(err, session.ErrTooLarge) {
			reason = "the application's session change would exceed max_session_bytes; the session is unchanged"
		}
		http.Error(w, reason, http.StatusBadGateway)
		return
	}
	cleanHeader(resp.Header)
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	stream := isEventStream(resp.Header.Get("Content-Type")) || resp.ContentLength > streamAbove
	if stream {
		// Store the session now and send the head: the body may be long.
		if err := http.NewResponseController(w).Flush(); err != nil {
			return
		}
	}
	if err := copyBody(w, resp.Body, isEventStream(resp.Header.Get("Content-Type"))); err != nil {
		h.log.Warn("apphost: the application's answer broke off", "path", r.URL.Path, "err", rootCause(err))
		if !s.Committed() {
			// Its session change must not be kept with half an answer: the
			// session middleware aborts it, the connection closes without
			// an answer, and the front tier resends with the same request id.
			panic(http.ErrAbortHandler)
		}
	}
}

// roundTrip sends out to the application. A connection it refuses (the
// process exited and is restarting) is tried again, on whichever process
// serves then, until readyWait passes: nothing was sent, so nothing can be
// applied twice.
// It returns the instance that answered (held, as inst was).
func (h *Host) roundTrip(ctx context.Context, inst *instance, out *http.Request) (*http.Response, *instance, error) {
	deadline := time.Now().Add(readyWait)
	for {
		out.URL.Host = inst.addr
		resp, err := inst.up.roundTrip(ctx, out)
		var op *net.OpError
		if err == nil || !errors.As(err, &op) || op.Op != "dial" || time.Now().After(deadline) {
			return resp, inst, err
		}
		select {
		case <-ctx.Done():
			return nil, inst, err
		case <-time.After(50 * time.Millisecond): // the supervisor notices the exit within its poll
		}
		next, _, _ := h.upstream(ctx)
		if next == nil {
			return nil, inst, err
		}
		h.release(inst)
		inst = next
	}
}

// streamAbove: answers declared larger than this stream at once (they
// would not be kept for a retry anyway).
const streamAbove = 16 << 10

// upstream returns the instance to send to, held (release it), waiting a
// little for one that is starting; otherwise the status and reason to answer.
func (h *Host) upstream(ctx context.Context) (*instance, int, string) {
	h.mu.Lock()
	inst := h.cur
	var ready chan struct{}
	if inst != nil {
		ready = inst.ready
	}
	h.mu.Unlock()
	if inst == nil {
		return nil, http.StatusServiceUnavailable, "no application is running on this server"
	}
	select {
	case <-ready:
		if h.hold(inst) {
			return inst, 0, ""
		}
		return h.upstream(ctx) // replaced meanwhile: the new one
	default:
	}
	h.mu.Lock()
	state := inst.state
	h.mu.Unlock()
	if state == "failed" {
		return nil, http.StatusServiceUnavailable, "the application failed and is not restarted (see app.exited events)"
	}
	t := time.NewTimer(readyWait)
	defer t.Stop()
	select {
	case <-ready:
		if h.hold(inst) {
			return inst, 0, ""
		}
		return h.upstream(ctx)
	case <-t.C:
		return nil, http.StatusServiceUnavailable, "the application is starting; retry"
	case <-ctx.Done():
		return nil, http.StatusServiceUnavailable, "request cancelled"
	}
}

// applySession applies the application's session change, all or nothing.
func applySession(s *session.Session, hdr http.Header) error {
	if v := hdr.Get(HeaderSessionInvalidate); v != "" {
		if v != "1" {
			return errors.New("Tandem-Session-Invalidate must be 1")
		}
		s.Invalidate()
		return nil
	}
	sets := hdr.Values(HeaderSessionSet)
	switch len(sets) {
	case 0:
		return nil
	case 1:
	default:
		return errors.New("more than one Tandem-Session-Set header")
	}
	patch, err := session.DecodePatchHeader(sets[0])
	if err != nil {
		return err
	}
	return s.ApplyPatch(patch)
}

// cleanHeader removes hop-by-hop headers (and those Connection names) and
// every Tandem-Session* header: users cannot forge a session through them,
// and the application's never reach the user.
func cleanHeader(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, f := range strings.Split(v, ",") {
			h.Del(strings.TrimSpace(f))
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	for k := range h {
		if strings.HasPrefix(k, headerPrefix) {
			delete(h, k)
		}
	}
}

func isEventStream(ct string) bool {
	mt, _, _ := mime.ParseMediaType(ct)
	return mt == "text/event-stream"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// copyBufs recycles copyBody's buffers.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBody copies the answer, flushing after every read when it streams
// events. It returns a read error of the application's answer (one cut
// short); a user who went away is not an error.
func copyBody(w http.ResponseWriter, body io.Reader, flushEach bool) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	rc := http.NewResponseController(w)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil
			}
			if flushEach {
				if rc.Flush() != nil {
					return nil
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
