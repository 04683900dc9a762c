package route

import (
	"strings"
	"testing"
)

const id = "0123456789abcdef0123456789abcdef"

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want Value
		ok   bool
	}{
		{"full", id + "!ms1!ms2", Value{id, "ms1", "ms2"}, true},
		{"no backup", id + "!ms1", Value{id, "ms1", ""}, true},
		{"empty backup", id + "!ms1!", Value{id, "ms1", ""}, true},
		{"bare id", id, Value{ID: id}, true},
		{"empty", "", Value{}, false},
		{"short id", "abc!ms1!ms2", Value{}, false},
		{"upper-case id", strings.ToUpper(id) + "!ms1", Value{}, false},
		{"empty primary", id + "!!ms2", Value{}, false},
		{"same primary and backup", id + "!ms1!ms1", Value{}, false},
		{"third route", id + "!ms1!ms2!ms3", Value{}, false},
		{"route too long", id + "!" + strings.Repeat("a", 17), Value{}, false},
		{"route with dash first", id + "!-ms1", Value{}, false},
		{"injection", id + "!ms1;Domain=evil.com", Value{}, false},
		{"crlf", id + "!ms1\r\nSet-Cookie: x=y", Value{}, false},
		{"oversize", id + "!" + strings.Repeat("a", 5000), Value{}, false},
		{"unicode", id + "!ms١", Value{}, false},
		{"sql", id + "!ms1' OR 1=1--", Value{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("Parse(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if got != tt.want {
				t.Fatalf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, v := range []Value{{NewID(), "a", "b"}, {NewID(), "ms-1", ""}, {NewID(), "0123456789abcdef", "x"}} {
		got, err := Parse(v.String())
		if err != nil || got != v {
			t.Fatalf("round trip %+v: got %+v, %v", v, got, err)
		}
	}
}

func TestNewIDUnique(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		s := NewID()
		if !ValidID(s) || seen[s] {
			t.Fatalf("bad or repeated id %q", s)
		}
		seen[s] = true
	}
}

func TestFromPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path, value, stripped string
		ok                    bool
	}{
		{"/counter;jsessionid=" + id + "!a!b", id + "!a!b", "/counter", true},
		{"/a;jsessionid=X/b", "X", "/a/b", true},
		{"/a;jsessionid=X;other=1", "X", "/a;other=1", true},
		{"/counter", "", "/counter", false},
		{"/;jsessionid=", "", "/", true},
	}
	for _, tt := range tests {
		v, s, ok := FromPath(tt.path)
		if v != tt.value || s != tt.stripped || ok != tt.ok {
			t.Errorf("FromPath(%q) = %q, %q, %v; want %q, %q, %v", tt.path, v, s, ok, tt.value, tt.stripped, tt.ok)
		}
	}
	if got := AddToPath("/counter;jsessionid=old", "new"); got != "/counter;jsessionid=new" {
		t.Errorf("AddToPath = %q", got)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{id + "!ms1!ms2", id + "!ms1", id, "", "!", id + "!!", id + "!a!b!c", "garbage;=\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Parse(s)
		if err != nil {
			return
		}
		if !ValidID(v.ID) || (v.Primary != "" && !ValidRoute(v.Primary)) || (v.Backup != "" && !ValidRoute(v.Backup)) {
			t.Fatalf("Parse(%q) accepted invalid %+v", s, v)
		}
		if strings.ContainsAny(v.String(), ";, \"\\\r\n") {
			t.Fatalf("encoding of %q is not cookie-safe", s)
		}
		again, err := Parse(v.String())
		if err != nil || again != v {
			t.Fatalf("re-parse of %q: %+v, %v", v.String(), again, err)
		}
	})
}

func FuzzFromPath(f *testing.F) {
	f.Add("/counter;jsessionid=" + id + "!a!b")
	f.Add(";jsessionid=;jsessionid=")
	f.Fuzz(func(t *testing.T, p string) {
		v, s, ok := FromPath(p)
		if !ok && s != p {
			t.Fatalf("no parameter but path changed: %q -> %q", p, s)
		}
		if ok && len(s)+len(v) > len(p) {
			t.Fatalf("outputs longer than input")
		}
	})
}
