package admin

import (
	"context"
	"fmt"
	"time"

	"tandem/backend/api"
	"tandem/backend/control"
	"tandem/backend/rolling"
)

// DefaultExtensions builds the control plane (backend/control) and rolling
// restarts (backend/rolling) on d. Run uses it when Config.Extend is nil.
func DefaultExtensions(ctx context.Context, d Deps) (Extensions, error) {
	plane := control.New(control.Config{Store: d.Store, Recorder: d.Recorder, NodeToken: d.NodeToken, Logger: d.Logger})
	roller, err := rolling.New(ctx, rolling.Config{DB: d.Store.SQL(), Domain: d.Store, Control: plane, Events: d.Recorder, Logger: d.Logger})
	if err != nil {
		return Extensions{}, fmt.Errorf("rolling: %w", err)
	}
	return Extensions{
		Control: plane,
		Roller:  rollerAdapter{roller},
		Loops:   []func(context.Context) error{plane.Run},
		Close:   roller.Close,
	}, nil
}

// rollerAdapter presents a *rolling.Roller as an api.Roller.
type rollerAdapter struct{ r *rolling.Roller }

func (a rollerAdapter) StartRolling(ctx context.Context, cluster, actor string, opts api.RollingOptions) (any, error) {
	return a.r.Start(ctx, cluster, rolling.Options{Order: opts.Order, StepTimeoutSeconds: int(opts.StepTimeout / time.Second), Actor: actor})
}

func (a rollerAdapter) Job(ctx context.Context, id int64) (any, error) {
	return a.r.Job(ctx, id)
}
