package webserver

import (
	"bytes"

	"tandem/backend/route"
)

// Candidate is one cluster member as the routing decision sees it.
type Candidate struct {
	Route       string
	Live        bool  // our own health view (passive + active checks)
	Outstanding int64 // requests in flight to this member
}

// Order appends to dst the indexes of cands in the order they should be
// tried and returns it. With a session (hasSession), the live member whose
// route is the session's primary comes first, then the live backup, then
// every other live member by least outstanding requests. Without one, live
// members by least outstanding requests. Members we believe down come last
// (primary, backup, then the rest) as a last resort, so a wrong health view
// costs a fast connect error, never a 503 while a server could answer.
// Ties between equally loaded members are broken by rotating from tie, so
// idle members share new sessions. Order is pure and allocation-free when
// dst has room.
func Order(cands []Candidate, v route.Value, hasSession bool, tie uint32, dst []int) []int {
	n := len(cands)
	if n == 0 {
		return dst
	}
	primary, backup := -1, -1
	if hasSession {
		for i := range cands {
			if v.Primary != "" && cands[i].Route == v.Primary {
				primary = i
			} else if v.Backup != "" && cands[i].Route == v.Backup {
				backup = i
			}
		}
	}
	if primary >= 0 && cands[primary].Live {
		dst = append(dst, primary)
	}
	if backup >= 0 && cands[backup].Live {
		dst = append(dst, backup)
	}
	// The rest of the live members, least outstanding first (insertion sort:
	// clusters are small and this must not allocate).
	restStart := len(dst)
	off := int(tie % uint32(n))
	for k := 0; k < n; k++ {
		i := (k + off) % n
		if i == primary || i == backup || !cands[i].Live {
			continue
		}
		dst = append(dst, i)
		for j := len(dst) - 1; j > restStart && cands[dst[j]].Outstanding < cands[dst[j-1]].Outstanding; j-- {
			dst[j], dst[j-1] = dst[j-1], dst[j]
		}
	}
	// Last resort: members believed down.
	if primary >= 0 && !cands[primary].Live {
		dst = append(dst, primary)
	}
	if backup >= 0 && !cands[backup].Live {
		dst = append(dst, backup)
	}
	for k := 0; k < n; k++ {
		i := (k + off) % n
		if i == primary || i == backup || cands[i].Live {
			continue
		}
		dst = append(dst, i)
	}
	return dst
}

// maxCookieHeader bounds the Cookie header bytes scanned for a session.
const maxCookieHeader = 16 << 10

// SessionFromCookie finds the first valid session value among the cookies
// named in names inside one Cookie header value. A malformed value is
// skipped (treated as no session), never an error.
func SessionFromCookie(header []byte, names []string) (route.Value, bool) {
	if len(header) > maxCookieHeader {
		header = header[:maxCookieHeader]
	}
	for len(header) > 0 {
		var pair []byte
		if i := bytes.IndexByte(header, ';'); i >= 0 {
			pair, header = header[:i], header[i+1:]
		} else {
			pair, header = header, nil
		}
		pair = bytes.TrimLeft(pair, " \t")
		eq := bytes.IndexByte(pair, '=')
		if eq <= 0 {
			continue
		}
		name := bytes.TrimRight(pair[:eq], " \t")
		if !nameIn(name, names) {
			continue
		}
		val := bytes.TrimRight(pair[eq+1:], " \t")
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		if len(val) == 0 || len(val) > route.MaxValueLen {
			continue
		}
		if v, err := route.Parse(string(val)); err == nil {
			return v, true
		}
	}
	return route.Value{}, false
}

func nameIn(name []byte, names []string) bool {
	for _, n := range names {
		if string(name) == n {
			return true
		}
	}
	return false
}

// SessionFromTarget finds a ;jsessionid= path parameter in a request target
// (origin form, path before any '?').
func SessionFromTarget(target []byte) (route.Value, bool) {
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		target = target[:q]
	}
	if bytes.IndexByte(target, ';') < 0 {
		return route.Value{}, false
	}
	raw, _, ok := route.FromPath(string(target))
	if !ok || raw == "" {
		return route.Value{}, false
	}
	v, err := route.Parse(raw)
	if err != nil {
		return route.Value{}, false
	}
	return v, true
}
