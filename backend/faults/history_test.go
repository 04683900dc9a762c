package faults_test

import (
	"testing"

	"tandem/backend/faults"
)

func ok(key int, id string, n int64) faults.Op {
	return faults.Op{Key: key, OK: true, Session: id, Count: n, Server: "ms1", Via: "test"}
}

func failed(key int) faults.Op { return faults.Op{Key: key, Err: "timeout"} }

func TestCheck(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		ops   []faults.Op
		kinds []string
	}{
		{"clean", []faults.Op{ok(1, "a", 1), ok(1, "a", 2), ok(1, "a", 3)}, nil},
		{"failed first request starts anew", []faults.Op{failed(1), ok(1, "a", 1), ok(1, "a", 2)}, nil},
		{"failed request may or may not apply (applied)", []faults.Op{ok(1, "a", 1), failed(1), ok(1, "a", 3)}, nil},
		{"failed request may or may not apply (not applied)", []faults.Op{ok(1, "a", 1), failed(1), ok(1, "a", 2)}, nil},
		{"two failures, at most two more", []faults.Op{ok(1, "a", 1), failed(1), failed(1), ok(1, "a", 4), ok(1, "a", 5)}, nil},
		{"lost write", []faults.Op{ok(1, "a", 1), ok(1, "a", 2), ok(1, "a", 2)}, []string{faults.Backwards}},
		{"stale copy", []faults.Op{ok(1, "a", 1), ok(1, "a", 2), ok(1, "a", 3), ok(1, "a", 1), ok(1, "a", 2)}, []string{faults.Backwards}},
		{"stale after a failure", []faults.Op{ok(1, "a", 1), ok(1, "a", 2), failed(1), ok(1, "a", 2)}, []string{faults.Backwards}},
		{"lost session", []faults.Op{ok(1, "a", 1), ok(1, "a", 2), ok(1, "b", 1), ok(1, "b", 2)}, []string{faults.Lost}},
		{"applied twice", []faults.Op{ok(1, "a", 1), ok(1, "a", 3)}, []string{faults.Duplicate}},
		{"more than the failures allow", []faults.Op{ok(1, "a", 1), failed(1), ok(1, "a", 4)}, []string{faults.Duplicate}},
		{"first answer not 1", []faults.Op{ok(1, "a", 2)}, []string{faults.NewSession}},
		{"sessions are independent", []faults.Op{ok(1, "a", 1), ok(2, "b", 1), ok(1, "a", 2), ok(2, "b", 2)}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := faults.NewHistory()
			for _, op := range tc.ops {
				h.Add(op)
			}
			res := faults.Check(h.Ops())
			var got []string
			for _, a := range res.Anomalies {
				got = append(got, a.Kind)
			}
			if len(got) != len(tc.kinds) {
				t.Fatalf("anomalies %v (%v), want %v", got, res.Anomalies, tc.kinds)
			}
			for i := range got {
				if got[i] != tc.kinds[i] {
					t.Fatalf("anomalies %v, want %v", got, tc.kinds)
				}
			}
			if res.Ops != len(tc.ops) || res.Acknowledged+res.Indeterminate != len(tc.ops) {
				t.Fatalf("counts %+v for %d ops", res, len(tc.ops))
			}
		})
	}
}
