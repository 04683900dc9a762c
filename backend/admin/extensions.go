package admin

import (
	"context"
	"fmt"
	"time"

	"tandem/backend/api"
	"tandem/backend/capacity"
	"tandem/backend/control"
	"tandem/backend/domain"
	"tandem/backend/drill"
	"tandem/backend/rolling"
	"tandem/backend/series"
)

// DefaultExtensions builds the control plane (backend/control) and rolling
// restarts (backend/rolling) on d. Run uses it when Config.Extend is nil.
func DefaultExtensions(ctx context.Context, d Deps) (Extensions, error) {
	plane := control.New(control.Config{Store: d.Store, Recorder: d.Recorder, NodeToken: d.NodeToken, Logger: d.Logger})
	roller, err := rolling.New(ctx, rolling.Config{DB: d.Store.SQL(), Domain: d.Store, Control: plane, Events: d.Recorder, Logger: d.Logger,
		// A deploy moves servers' configs; a go application's reaches the
		// node managers too: every node is re-checked (a deploy step is rare).
		Deployer: d.Store, Push: func(ctx context.Context, _ string) { plane.Changed(ctx, control.Everything) }})
	if err != nil {
		return Extensions{}, fmt.Errorf("rolling: %w", err)
	}
	record := func(ctx context.Context, e domain.Event) error {
		_, err := d.Recorder.Record(ctx, e)
		return err
	}
	capy := capacity.New(capacity.Config{Source: d.Store, Live: plane.Live, Record: record, Logger: d.Logger})
	drills, err := drill.New(ctx, drill.Config{Store: d.Store, Control: plane, Capacity: capy, Record: record, Logger: d.Logger})
	if err != nil {
		roller.Close()
		return Extensions{}, fmt.Errorf("drills: %w", err)
	}
	sampler := series.New(series.Config{Store: d.Store, Live: plane.Snapshot, Every: d.HistoryEvery, Logger: d.Logger})
	return Extensions{
		Control:  plane,
		Roller:   rollerAdapter{roller},
		Capacity: capy,
		Drills:   drills,
		Loops:    []func(context.Context) error{plane.Run, capy.Run, sampler.Run},
		Close:    func() { drills.Close(); roller.Close() },
	}, nil
}

// rollerAdapter presents a *rolling.Roller as an api.Roller.
type rollerAdapter struct{ r *rolling.Roller }

func (a rollerAdapter) StartRolling(ctx context.Context, cluster, actor string, opts api.RollingOptions) (any, error) {
	return a.r.Start(ctx, cluster, rolling.Options{Order: opts.Order, StepTimeoutSeconds: int(opts.StepTimeout / time.Second), Actor: actor})
}

func (a rollerAdapter) StartDeploy(ctx context.Context, cluster, actor string, d api.DeployRequest, stepTimeout time.Duration) (any, error) {
	return a.r.Start(ctx, cluster, rolling.Options{StepTimeoutSeconds: int(stepTimeout / time.Second), Actor: actor,
		Deploy: &rolling.Deploy{Application: d.Application, Version: d.Version, Kind: d.Kind, FromApplication: d.FromApplication, FromVersion: d.FromVersion, FromKind: d.FromKind, Rollback: d.Rollback}})
}

func (a rollerAdapter) Job(ctx context.Context, id int64) (any, error) {
	return a.r.Job(ctx, id)
}
