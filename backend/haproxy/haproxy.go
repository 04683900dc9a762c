// Package haproxy renders an HAProxy configuration equivalent to a Tandem
// web server's routing, for operators who keep their own load balancer:
// a request whose session cookie (or ;jsessionid= path parameter) names a
// primary route goes to that server, then to the server of the backup
// route, then to any live server by least connections; servers are checked
// with GET /healthz, marked down on the first connection error, and failed
// idempotent requests, and requests naming a session (answered from the
// owner's stored reply when resent), are retried on another server
// (option redispatch).
//
// Render is pure: same input, same text.
package haproxy

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"tandem/backend/domain"
	"tandem/backend/route"
	"tandem/backend/wire"
)

// ErrInvalid wraps every rejected input; nothing from the input reaches
// the output unvalidated, so a name cannot inject HAProxy directives.
var ErrInvalid = errors.New("haproxy: invalid input")

// Options tune the rendered file; the zero value is fine.
type Options struct {
	// MaxConn is the global and frontend maxconn (default 4000).
	MaxConn int
	// Threads sets nbthread when > 0 (default: HAProxy's, one per CPU).
	Threads int
	// StatsListen, when set, adds a stats page (/stats) on that address.
	StatsListen string
	// ExtraGlobal lines are trusted operator lines added to the global
	// section (e.g. "pidfile /run/haproxy.pid"); they are not validated.
	ExtraGlobal []string
	// SessionServerTimeout bounds the wait for a server's answer to a
	// request naming a session, after which the request is resent to
	// another server (default: the cluster's heartbeat timeout + 1 s). See
	// Render's comment in the output: HAProxy cannot resend when the
	// health check fails, only on this timeout, so an application with
	// session requests slower than this needs it raised.
	SessionServerTimeout time.Duration
	// CAFile is where HAProxy finds the domain CA (ca.crt) to check the
	// servers' certificates when the cluster sets member_tls (default
	// /etc/haproxy/tandem-ca.crt).
	CAFile string
}

// Render returns a complete HAProxy configuration (global, defaults,
// frontend on listen, backend with the members) for one cluster.
// cookieNames lists the session cookie names in use (the first is the
// cluster default; empty means JSESSIONID).
func Render(listen string, cluster wire.ClusterSettings, cookieNames []string, members []wire.Member) (string, error) {
	return RenderWith(listen, cluster, cookieNames, members, Options{})
}

// RenderWith is Render with Options.
func RenderWith(listen string, cluster wire.ClusterSettings, cookieNames []string, members []wire.Member, opt Options) (string, error) {
	if err := checkAddr(listen); err != nil {
		return "", fmt.Errorf("%w: listen: %w", ErrInvalid, err)
	}
	if !domain.ValidName(cluster.Name) {
		return "", fmt.Errorf("%w: cluster name %q", ErrInvalid, cluster.Name)
	}
	if len(cookieNames) == 0 {
		cookieNames = []string{"JSESSIONID"}
	}
	for _, c := range cookieNames {
		if !validCookieName(c) {
			return "", fmt.Errorf("%w: cookie name %q", ErrInvalid, c)
		}
	}
	if len(members) == 0 {
		return "", fmt.Errorf("%w: no members", ErrInvalid)
	}
	routes := map[string]bool{}
	names := map[string]bool{}
	for _, m := range members {
		if !domain.ValidName(m.Name) || names[m.Name] {
			return "", fmt.Errorf("%w: member name %q", ErrInvalid, m.Name)
		}
		if !route.ValidRoute(m.Route) || routes[m.Route] {
			return "", fmt.Errorf("%w: member %s: route %q", ErrInvalid, m.Name, m.Route)
		}
		if err := checkAddr(m.Listen); err != nil {
			return "", fmt.Errorf("%w: member %s: listen: %w", ErrInvalid, m.Name, err)
		}
		names[m.Name], routes[m.Route] = true, true
	}
	if opt.StatsListen != "" {
		if err := checkAddr(opt.StatsListen); err != nil {
			return "", fmt.Errorf("%w: stats listen: %w", ErrInvalid, err)
		}
	}
	maxConn := opt.MaxConn
	if maxConn <= 0 {
		maxConn = 4000
	}
	if opt.SessionServerTimeout < 0 {
		return "", fmt.Errorf("%w: session server timeout %s", ErrInvalid, opt.SessionServerTimeout)
	}
	sessTimeout := opt.SessionServerTimeout.Milliseconds()
	if sessTimeout == 0 {
		hb := cluster.HeartbeatTimeoutMS
		if hb <= 0 {
			hb = domain.DefaultHeartbeatTimeoutMS
		}
		sessTimeout = int64(hb) + 1000
	}
	inter := cluster.HeartbeatIntervalMS
	if inter <= 0 {
		inter = 1000
	}

	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	be := "tandem_" + sanitize(cluster.Name)
	w("# HAProxy configuration for Tandem cluster %s, rendered by Tandem.", cluster.Name)
	w("# Stickiness follows the route part of the session cookie (<id>!<primary>[!<backup>]):")
	w("# primary first, then backup, then any live server by least connections.")
	w("global")
	w("    maxconn %d", maxConn)
	if opt.Threads > 0 {
		w("    nbthread %d", opt.Threads)
	}
	for _, l := range opt.ExtraGlobal {
		w("    %s", strings.ReplaceAll(l, "\n", " "))
	}
	w("")
	w("defaults")
	w("    mode http")
	w("    option http-keep-alive")
	w("    option redispatch 1")
	w("    retries 3")
	w("    retry-on conn-failure empty-response response-timeout 503")
	w("    timeout connect 2s")
	w("    timeout client 60s")
	w("    timeout server 30s")
	w("    timeout http-request 10s")
	w("    timeout http-keep-alive 60s")
	w("    timeout queue 5s")
	w("")
	w("frontend %s_in", be)
	w("    bind %s", listen)
	w("    maxconn %d", maxConn)
	w("    # One request id per client request, the same on every retry: the session")
	w("    # owner answers a retry of a write it applied from the stored reply instead")
	w("    # of applying it twice. Clients cannot set Tandem's internal headers.")
	w("    unique-id-format %%{+X}o%%ci:%%cp_%%fi:%%fp_%%Ts_%%rt:%%pid")
	w("    http-request del-header X-Tandem-Forwarded")
	w("    http-request set-header X-Tandem-Request-Id %%[unique-id]")
	w("    default_backend %s", be)
	w("")
	w("backend %s", be)
	w("    balance leastconn")
	w("    acl tandem_idempotent method GET HEAD OPTIONS PUT DELETE")
	w("    option forwardfor")
	w("    http-request set-header X-Forwarded-Proto http")
	w("    option httpchk GET /healthz")
	w("    http-check expect status 200")
	w("    # session value from the first cookie found, else from ;jsessionid= in the path")
	for i, c := range cookieNames {
		cond := fmt.Sprintf("{ req.cook(%s) -m found }", c)
		if i > 0 {
			cond += " !{ var(txn.tandem_sess) -m found }"
		}
		w("    http-request set-var(txn.tandem_sess) req.cook(%s) if %s", c, cond)
	}
	w("    http-request set-var(txn.tandem_sess) path,regsub(^.*;jsessionid=,),field(1,/),field(1,;) if { path -m sub ;jsessionid= } !{ var(txn.tandem_sess) -m found }")
	w("    http-request set-var(txn.tandem_primary) var(txn.tandem_sess),field(2,!) if { var(txn.tandem_sess) -m found }")
	w("    http-request set-var(txn.tandem_backup) var(txn.tandem_sess),field(3,!) if { var(txn.tandem_sess) -m found }")
	w("    # Once sent, only idempotent requests and requests naming a session are retried")
	w("    # (the session's owner answers a resent write from its stored reply; a managed")
	w("    # server's 503 means: try again).")
	w("    http-request disable-l7-retry unless tandem_idempotent || { var(txn.tandem_sess) -m found }")
	w("    # A frozen server (GC pause, VM stall, SIGSTOP) takes requests and answers nothing.")
	w("    # Requests naming a session wait for it at most this long and are then resent to")
	w("    # another server (retry-on response-timeout) with the same request id. HAProxy cannot")
	w("    # resend a waiting request when the health check marks its server down (Tandem's web")
	w("    # server does), only on this timeout; so a session request slower than this is resent")
	w("    # too (answered from its stored reply, or 504 after the retries): raise it for slow")
	w("    # applications.")
	w("    http-request set-timeout server %dms if { var(txn.tandem_sess) -m found }", sessTimeout)
	for _, m := range members {
		w("    use-server %s if { var(txn.tandem_primary) -m str %s }", sanitize(m.Name), m.Route)
	}
	for _, m := range members {
		w("    use-server %s if { var(txn.tandem_backup) -m str %s }", sanitize(m.Name), m.Route)
	}
	ssl := ""
	if cluster.MemberTLS {
		ca := opt.CAFile
		if ca == "" {
			ca = "/etc/haproxy/tandem-ca.crt"
		}
		// member_tls: TLS to each server, its certificate checked against
		// the domain CA and its own name (copy the admin server's ca.crt).
		ssl = " ssl verify required ca-file " + ca + " verifyhost %s"
	}
	for _, m := range members {
		line := fmt.Sprintf("    server %s %s check inter %dms fastinter %dms downinter %dms rise 1 fall 2 observe layer4 error-limit 1 on-error mark-down",
			sanitize(m.Name), m.Listen, inter, max(inter/4, 100), max(inter/2, 100))
		if ssl != "" {
			line += fmt.Sprintf(ssl, sanitize(m.Name))
		}
		w("%s", line)
	}
	if opt.StatsListen != "" {
		w("")
		w("listen %s_stats", be)
		w("    bind %s", opt.StatsListen)
		w("    stats enable")
		w("    stats uri /stats")
	}
	return b.String(), nil
}

// checkAddr accepts host:port with a literal IP or a DNS name and a
// numeric port.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q", port)
	}
	if host == "" || net.ParseIP(host) != nil {
		return nil
	}
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("host %q", host)
		}
	}
	return nil
}

func validCookieName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// sanitize keeps a validated name safe as an HAProxy identifier.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

// FromWebServerConfig renders the HAProxy equivalent of a Tandem web
// server's routing table (its cluster, cookie names and members), with
// the frontend on listen.
func FromWebServerConfig(listen string, wc wire.WebServerConfig) (string, error) {
	return Render(listen, wc.Cluster, wc.CookieNames, wc.Members)
}
