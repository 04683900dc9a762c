package replication

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tandem/backend/domain"
	"tandem/backend/session"
	"tandem/backend/wire"
)

func TestChooseBackup(t *testing.T) {
	t.Parallel()
	ms := []wire.Member{{Name: "ms3"}, {Name: "ms1", Backup: "ms3"}, {Name: "ms4"}, {Name: "ms2"}}
	all := func(string) bool { return true }
	only := func(names ...string) func(string) bool {
		return func(n string) bool {
			for _, x := range names {
				if x == n {
					return true
				}
			}
			return false
		}
	}
	tests := []struct {
		name   string
		policy string
		self   string
		live   func(string) bool
		want   string
	}{
		{"ring next by name", domain.BackupRing, "ms1", all, "ms2"},
		{"ring wraps", domain.BackupRing, "ms4", all, "ms1"},
		{"ring skips dead", domain.BackupRing, "ms1", only("ms3", "ms4"), "ms3"},
		{"ring skips dead and wraps", domain.BackupRing, "ms3", only("ms2"), "ms2"},
		{"ring alone", domain.BackupRing, "ms2", only(), ""},
		{"explicit live", domain.BackupExplicit, "ms1", all, "ms3"},
		{"explicit dead falls back to ring", domain.BackupExplicit, "ms1", only("ms2", "ms4"), "ms2"},
		{"explicit unset is ring", domain.BackupExplicit, "ms2", all, "ms3"},
		{"self not in list", domain.BackupRing, "ms25", all, "ms3"},
		{"another host first", domain.BackupRing, "a1", all, "b1"},
		{"a host's servers spread over the other's", domain.BackupRing, "a2", all, "b2"},
		{"the other way round", domain.BackupRing, "b2", all, "a2"},
		{"a dead host's place is taken on the other host", domain.BackupRing, "a2", only("a1", "b1"), "b1"},
		{"same host when no other is live", domain.BackupRing, "a1", only("a2"), "a2"},
		{"an unknown host takes the plain ring", domain.BackupRing, "x1", all, "a1"},
	}
	hosts := []wire.Member{{Name: "a1", Host: "A"}, {Name: "a2", Host: "A"}, {Name: "b1", Host: "B"}, {Name: "b2", Host: "B"}, {Name: "x1"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			members := ms
			if tt.self[0] != 'm' {
				members = hosts
			}
			if got := ChooseBackup(tt.policy, tt.self, members, tt.live); got != tt.want {
				t.Fatalf("ChooseBackup = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNewer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ae, av, be, bv uint64
		want           bool
	}{
		{1, 1, 1, 0, true},
		{1, 1, 1, 1, false},
		{1, 0, 1, 1, false},
		{2, 0, 1, 99, true}, // a takeover beats any number of writes before it
		{1, 99, 2, 0, false},
	}
	for _, tt := range tests {
		if got := session.Newer(tt.ae, tt.av, tt.be, tt.bv); got != tt.want {
			t.Errorf("Newer(%d,%d | %d,%d) = %v", tt.ae, tt.av, tt.be, tt.bv, got)
		}
	}
}

// TestLeaseEndsBeforeTakeover: whatever the delays, a primary's lease
// (from a message it sent that the backup received later) has ended when
// the backup may take over.
func TestLeaseEndsBeforeTakeover(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	base := time.Unix(1e9, 0)
	for i := 0; i < 100000; i++ {
		timeout := time.Duration(100+r.IntN(10000)) * time.Millisecond
		sent := base.Add(time.Duration(r.IntN(1e6)) * time.Microsecond)
		heard := sent.Add(time.Duration(r.IntN(5e6)) * time.Microsecond) // received after it was sent
		now := heard.Add(time.Duration(r.IntN(20e6)) * time.Microsecond)
		if MayTakeOver(heard, now, timeout) && now.Before(LeaseEnd(sent, timeout)) {
			t.Fatalf("takeover at %v while the lease (sent %v, heard %v, timeout %v) lasts until %v", now, sent, heard, timeout, LeaseEnd(sent, timeout))
		}
	}
	if !LeaseEnd(base, time.Second).Before(base.Add(time.Second)) {
		t.Fatal("a lease must be shorter than the heartbeat timeout")
	}
}

func sampleBatch() *Batch {
	return &Batch{From: "ms1", Inc: "abc", Items: []Item{
		{Op: opPut, Rec: &session.Record{ID: "0123456789abcdef0123456789abcdef", Home: "ms1", Owner: "ms1", Backup: "ms2", Epoch: 3, Version: 7, Created: 1, Access: -2,
			Attrs: map[string]session.Value{"count": {Kind: session.KindInt, I: -42}, "name": {Kind: session.KindString, S: "héllo"}, "blob": {Kind: session.KindBytes, S: "\x00\xff"}}}},
		{Op: opDrop, Rec: &session.Record{ID: "fedcba9876543210fedcba9876543210", Owner: "ms1", Epoch: 9, Attrs: map[string]session.Value{}}},
	}}
}

func TestCodecRoundTrip(t *testing.T) {
	t.Parallel()
	b := sampleBatch()
	enc := b.Encode(nil)
	got, err := DecodeBatch(enc)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b, got); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
	for i := 0; i < len(enc); i++ {
		if _, err := DecodeBatch(enc[:i]); !errors.Is(err, ErrBadBody) {
			t.Fatalf("truncated at %d: err %v", i, err)
		}
	}
	if _, err := DecodeBatch(append(enc, 0)); !errors.Is(err, ErrBadBody) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(sampleBatch().Encode(nil))
	f.Add([]byte{magic})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBatch(data)
		if err != nil {
			return
		}
		// What decodes re-encodes to something that decodes the same.
		again, err := DecodeBatch(b.Encode(nil))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !bytes.Equal(again.Encode(nil), b.Encode(nil)) && len(b.Items) < 2 {
			t.Fatal("encoding not stable")
		}
	})
}
