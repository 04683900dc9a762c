package domain

import (
	"net"
	"regexp"
	"strconv"
	"strings"
)

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	routeRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,15}$`)
)

// ValidName reports whether s is a resource name: [a-z0-9][a-z0-9-]{0,62}.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// ValidRoute reports whether s is a route id: [a-z0-9][a-z0-9-]{0,15}.
// Routes travel in the session cookie, so they are short and cookie-safe.
func ValidRoute(s string) bool { return routeRE.MatchString(s) }

// DefaultRoute derives a route id from a server name (its first 16 bytes,
// without a trailing dash).
func DefaultRoute(name string) string {
	if len(name) > 16 {
		name = name[:16]
	}
	return strings.TrimRight(name, "-")
}

func checkName(field, s string) error {
	if s == "" {
		return Invalid(field, "is required")
	}
	if !ValidName(s) {
		return Invalid(field, "must match [a-z0-9][a-z0-9-]{0,62} (lower-case letters, digits and dashes, starting with a letter or digit, at most 63)")
	}
	return nil
}

// CheckName validates a resource name and names field in the error.
func CheckName(field, s string) error { return checkName(field, s) }

// CheckListen validates a host:port listen address with a port in 1..65535.
func CheckListen(field, s string) error {
	if s == "" {
		return Invalid(field, "is required (host:port)")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Invalid(field, "must be host:port")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
		return Invalid(field, "port must be a number from 1 to 65535")
	}
	if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		return Invalid(field, "host must be an IP address or a host name")
	}
	return nil
}

var labelRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// ValidHost reports whether s is an IP address or a host name.
func ValidHost(s string) bool {
	return net.ParseIP(s) != nil || validHostname(s)
}

func validHostname(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !labelRE.MatchString(l) {
			return false
		}
	}
	return true
}

// ValidCookieDomain reports whether s is usable as a cookie Domain attribute:
// empty (host-only), or a host name of at least one label, optionally with
// one leading dot. IP addresses are refused: browsers ignore them as Domain.
func ValidCookieDomain(s string) bool {
	if s == "" {
		return true
	}
	s = strings.TrimPrefix(s, ".")
	if s == "" || net.ParseIP(s) != nil {
		return false
	}
	return validHostname(s)
}

// ValidCookieName reports whether s is an RFC 6265 token (RFC 2616 token:
// visible ASCII except separators).
func ValidCookieName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}
