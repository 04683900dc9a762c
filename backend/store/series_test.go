package store_test

import (
	"context"
	"testing"
	"time"

	"tandem/backend/domain"
)

func TestSeriesAppendQueryCompact(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	// 26 hours of samples every minute for ms1 (sessions = minute index).
	start := now.Add(-26 * time.Hour)
	var ss []domain.Sample
	for i := 0; i < 26*60; i++ {
		st := domain.StateRunning
		if i%5 == 4 {
			st = domain.StateFailed
		}
		ss = append(ss, domain.Sample{Time: start.Add(time.Duration(i) * time.Minute), Cluster: "c1", Server: "ms1", State: st, Sessions: float64(i), RPS: 2, LagMS: int64(i % 7)})
	}
	ss = append(ss, domain.Sample{Time: now, Cluster: "c2", Server: "x1", State: domain.StateRunning, Sessions: 1})
	if err := s.AppendSamples(ctx, ss); err != nil {
		t.Fatal(err)
	}
	got, err := s.Samples(ctx, domain.SeriesQuery{Cluster: "c1", From: now.Add(-time.Hour), To: now, Step: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	pts := got["ms1"]
	if len(got) != 1 || len(pts) != 6 {
		t.Fatalf("last hour by 10 minutes: %d servers, %+v", len(got), pts)
	}
	// The bucket from 11:10 averages minutes 1510..1519; its state is its last sample's.
	if p := pts[1]; !p.Time.Equal(now.Add(-50*time.Minute)) || p.Sessions != 1514.5 || p.State != domain.StateFailed || p.LagMS != 6 || p.RPS != 2 {
		t.Fatalf("bucket %+v", p)
	}

	// Compact: older than 24 h becomes 5-minute averages; a 30-day cut removes nothing yet.
	removed, err := s.CompactSeries(ctx, now, 24*time.Hour, 30*24*time.Hour)
	if err != nil || removed != 120 {
		t.Fatalf("compact removed %d, %v; want the 120 samples of the first 2 hours", removed, err)
	}
	got, err = s.Samples(ctx, domain.SeriesQuery{Server: "ms1", From: start, To: now, Step: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	pts = got["ms1"]
	if len(pts) != 24+24*60 {
		t.Fatalf("after compaction %d points, want 24 downsampled + 1440", len(pts))
	}
	if p := pts[0]; !p.Time.Equal(start) || p.Sessions != 2 || p.State != domain.StateFailed {
		t.Fatalf("first downsampled point %+v", p)
	}
	// The downsampled history goes after 30 days.
	if _, err = s.CompactSeries(ctx, now.Add(31*24*time.Hour), 24*time.Hour, 30*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if got, err = s.Samples(ctx, domain.SeriesQuery{From: start, To: now.Add(31 * 24 * time.Hour), Step: time.Minute}); err != nil || len(got) != 0 {
		t.Fatalf("31 days later: %d servers with history, %v", len(got), err)
	}
}

func TestFailuresStayUntilAcknowledged(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for _, e := range []domain.Event{
		{Type: domain.EventServerDown, Cluster: "c1", Server: "ms1", Message: "first"},
		{Type: domain.EventServerUp, Cluster: "c1", Server: "ms1"},
		{Type: domain.EventServerDown, Cluster: "c1", Server: "ms1", Message: "second"},
		{Type: domain.EventServerDown, Cluster: "c1", Server: "ms2", Message: "other"},
	} {
		if _, err := s.AppendEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	fs, err := s.Failures(ctx)
	if err != nil || len(fs) != 2 || fs[1].Server != "ms1" || fs[1].Count != 2 || fs[1].Message != "second" || fs[1].Time.IsZero() {
		t.Fatalf("failures %+v %v", fs, err)
	}
	if n, err := s.AcknowledgeFailures(ctx, "alice", "ms1"); err != nil || n != 2 {
		t.Fatalf("ack: %d %v", n, err)
	}
	if n, err := s.AcknowledgeFailures(ctx, "alice", "ms1"); err != nil || n != 0 {
		t.Fatalf("second ack: %d %v", n, err)
	}
	if fs, _ = s.Failures(ctx); len(fs) != 1 || fs[0].Server != "ms2" {
		t.Fatalf("after ack %+v", fs)
	}
	if _, err := s.AppendEvent(ctx, domain.Event{Type: domain.EventServerDown, Cluster: "c1", Server: "ms1", Message: "third"}); err != nil {
		t.Fatal(err)
	}
	if fs, _ = s.Failures(ctx); len(fs) != 2 || fs[0].Server != "ms1" || fs[0].Count != 1 {
		t.Fatalf("a new failure after the ack %+v", fs)
	}
}
