package webserver

import (
	"bufio"
	"slices"
	"strings"
	"testing"

	"tandem/backend/route"
)

const sid = "0123456789abcdef0123456789abcdef"

func TestOrder(t *testing.T) {
	t.Parallel()
	four := func(live ...bool) []Candidate {
		c := []Candidate{{Route: "a"}, {Route: "b"}, {Route: "c"}, {Route: "d"}}
		for i := range c {
			c[i].Live = live[i]
		}
		return c
	}
	all := four(true, true, true, true)
	loaded := four(true, true, true, true)
	loaded[0].Outstanding, loaded[1].Outstanding, loaded[2].Outstanding, loaded[3].Outstanding = 5, 1, 3, 0
	tests := []struct {
		name    string
		cands   []Candidate
		v       route.Value
		session bool
		tie     uint32
		want    []int
	}{
		{"primary then backup then rest", all, route.Value{ID: sid, Primary: "c", Backup: "a"}, true, 0, []int{2, 0, 1, 3}},
		{"primary down: backup first, primary last", four(true, true, false, true), route.Value{ID: sid, Primary: "c", Backup: "a"}, true, 0, []int{0, 1, 3, 2}},
		{"primary and backup down: any live", four(false, true, false, true), route.Value{ID: sid, Primary: "c", Backup: "a"}, true, 0, []int{1, 3, 2, 0}},
		{"no backup in cookie", all, route.Value{ID: sid, Primary: "d"}, true, 0, []int{3, 0, 1, 2}},
		{"unknown primary route", all, route.Value{ID: sid, Primary: "zz", Backup: "b"}, true, 0, []int{1, 0, 2, 3}},
		{"bare id: least outstanding", loaded, route.Value{ID: sid}, true, 0, []int{3, 1, 2, 0}},
		{"no session: least outstanding", loaded, route.Value{}, false, 0, []int{3, 1, 2, 0}},
		{"no session: ties rotate", all, route.Value{}, false, 2, []int{2, 3, 0, 1}},
		{"session rest rotates too", all, route.Value{ID: sid, Primary: "a"}, true, 1, []int{0, 1, 2, 3}},
		{"session ignored when hasSession false", all, route.Value{ID: sid, Primary: "c"}, false, 0, []int{0, 1, 2, 3}},
		{"all down: primary, backup, rest", four(false, false, false, false), route.Value{ID: sid, Primary: "b", Backup: "d"}, true, 0, []int{1, 3, 0, 2}},
		{"loaded primary still first", loaded, route.Value{ID: sid, Primary: "a", Backup: "c"}, true, 0, []int{0, 2, 3, 1}},
		{"empty", nil, route.Value{}, false, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Order(tt.cands, tt.v, tt.session, tt.tie, nil)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Order = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOrderDoesNotAllocate(t *testing.T) {
	c := []Candidate{{Route: "a", Live: true}, {Route: "b", Live: true}, {Route: "c"}, {Route: "d", Live: true, Outstanding: 3}}
	dst := make([]int, 0, 8)
	v := route.Value{ID: sid, Primary: "c", Backup: "b"}
	if n := testing.AllocsPerRun(100, func() { dst = Order(c, v, true, 7, dst[:0]) }); n != 0 {
		t.Fatalf("Order allocates %v times", n)
	}
}

func TestSessionFromCookie(t *testing.T) {
	t.Parallel()
	names := []string{"JSESSIONID", "APPSESSION"}
	full := route.Value{ID: sid, Primary: "ms1", Backup: "ms2"}
	tests := []struct {
		name   string
		header string
		want   route.Value
		ok     bool
	}{
		{"single", "JSESSIONID=" + sid + "!ms1!ms2", full, true},
		{"second name", "APPSESSION=" + sid + "!ms1!ms2", full, true},
		{"among others", "a=1; JSESSIONID=" + sid + "!ms1!ms2; b=2", full, true},
		{"no spaces", "a=1;JSESSIONID=" + sid + "!ms1!ms2;b=2", full, true},
		{"quoted", `JSESSIONID="` + sid + `!ms1!ms2"`, full, true},
		{"primary only", "JSESSIONID=" + sid + "!ms1", route.Value{ID: sid, Primary: "ms1"}, true},
		{"bare id", "JSESSIONID=" + sid, route.Value{ID: sid}, true},
		{"first malformed, second valid", "JSESSIONID=junk; JSESSIONID=" + sid + "!ms1!ms2", full, true},
		{"other cookie name", "SESSION=" + sid + "!ms1", route.Value{}, false},
		{"case differs", "jsessionid=" + sid + "!ms1", route.Value{}, false},
		{"name as suffix", "XJSESSIONID=" + sid + "!ms1", route.Value{}, false},
		{"garbage", "JSESSIONID=garbage", route.Value{}, false},
		{"empty value", "JSESSIONID=", route.Value{}, false},
		{"no value", "JSESSIONID", route.Value{}, false},
		{"only separators", ";;; ;=;==", route.Value{}, false},
		{"oversize", "JSESSIONID=" + sid + "!" + strings.Repeat("a", 10000), route.Value{}, false},
		{"oversize header", strings.Repeat("x=1; ", 5000) + "JSESSIONID=" + sid + "!ms1", route.Value{}, false},
		{"upper-case id", "JSESSIONID=" + strings.ToUpper(sid) + "!ms1", route.Value{}, false},
		{"invalid route", "JSESSIONID=" + sid + "!MS1", route.Value{}, false},
		{"injection attribute", "JSESSIONID=" + sid + "!ms1,Domain=evil.com", route.Value{}, false},
		{"crlf", "JSESSIONID=" + sid + "!ms1\r\nX-Evil: 1", route.Value{}, false},
		{"nul", "JSESSIONID=" + sid + "!ms1\x00", route.Value{}, false},
		{"three routes", "JSESSIONID=" + sid + "!a!b!c", route.Value{}, false},
		{"same primary and backup", "JSESSIONID=" + sid + "!a!a", route.Value{}, false},
		{"path traversal", "JSESSIONID=" + sid + "!../../etc", route.Value{}, false},
		{"unicode", "JSESSIONID=" + sid + "!мs1", route.Value{}, false},
		{"sql", "JSESSIONID=" + sid + "!a' OR '1'='1", route.Value{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := SessionFromCookie([]byte(tt.header), names)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("SessionFromCookie = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestSessionFromTarget(t *testing.T) {
	t.Parallel()
	full := route.Value{ID: sid, Primary: "ms1", Backup: "ms2"}
	tests := []struct {
		target string
		want   route.Value
		ok     bool
	}{
		{"/counter;jsessionid=" + sid + "!ms1!ms2", full, true},
		{"/counter;jsessionid=" + sid + "!ms1!ms2?x=1", full, true},
		{"/a;jsessionid=" + sid + "!ms1!ms2/b", full, true},
		{"/a;v=1;jsessionid=" + sid + "!ms1!ms2;w=2", full, true},
		{"/counter;jsessionid=" + sid, route.Value{ID: sid}, true},
		{"/counter?x=;jsessionid=" + sid + "!ms1", route.Value{}, false}, // in the query: not a path parameter
		{"/counter;jsessionid=", route.Value{}, false},
		{"/counter;jsessionid=junk", route.Value{}, false},
		{"/counter;JSESSIONID=" + sid + "!ms1", route.Value{}, false},
		{"/counter;jsessionid=" + sid + "!ms1%0d%0a", route.Value{}, false},
		{"/counter", route.Value{}, false},
		{"*", route.Value{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			t.Parallel()
			got, ok := SessionFromTarget([]byte(tt.target))
			if ok != tt.ok || got != tt.want {
				t.Fatalf("SessionFromTarget(%q) = %+v, %v; want %+v, %v", tt.target, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// FuzzSessionFromRequest fuzzes the cookie and path parsers and the head
// parser: never a panic, and a session found always has a valid id and
// valid, distinct routes.
func FuzzSessionFromRequest(f *testing.F) {
	for _, s := range []string{
		"JSESSIONID=" + sid + "!ms1!ms2",
		"a=1; JSESSIONID=\"" + sid + "!ms1\"; b",
		"JSESSIONID=" + sid + "!ms1!ms1",
		";;==;",
		"APPSESSION=" + sid,
		"JSESSIONID=" + sid + "!ms1\r\nX: y",
	} {
		f.Add(s, "/x;jsessionid="+sid+"!a!b?q=1")
	}
	f.Add("", "")
	f.Add("JSESSIONID", ";jsessionid=;;/")
	names := []string{"JSESSIONID", "APPSESSION"}
	f.Fuzz(func(t *testing.T, cookie, target string) {
		check := func(v route.Value, ok bool) {
			if !ok {
				return
			}
			if !route.ValidID(v.ID) || (v.Primary != "" && !route.ValidRoute(v.Primary)) ||
				(v.Backup != "" && (!route.ValidRoute(v.Backup) || v.Backup == v.Primary)) {
				t.Fatalf("invalid session accepted: %+v", v)
			}
		}
		check(SessionFromCookie([]byte(cookie), names))
		check(SessionFromTarget([]byte(target)))
		var h head
		msg := "GET " + target + " HTTP/1.1\r\nCookie: " + cookie + "\r\n\r\n"
		_, _ = readHead(bufio.NewReaderSize(strings.NewReader(msg), 64), &h, 4096)
		for _, hd := range h.hdrs {
			if !isToken(hd.name) || strings.ContainsAny(string(hd.value), "\r\n\x00") {
				t.Fatalf("bad header accepted: %q: %q", hd.name, hd.value)
			}
		}
	})
}
