package control

import (
	"context"
	"net"

	"tandem/backend/wire"
)

// advertiseStore records where a managed server is reached
// (store.Store.SetAdvertise).
type advertiseStore interface {
	SetAdvertise(ctx context.Context, name, host string, auto bool) (cluster string, changed bool, err error)
}

// noteAdvertise records the host other machines reach a connecting
// managed server at: its --advertise, else the address its connection
// came from (kept only when it binds every address). A change goes to
// the cluster's nodes as a new config; this node reads its own afresh.
func (p *Plane) noteAdvertise(ctx context.Context, hello wire.Hello, remote string) {
	as, ok := p.cfg.Store.(advertiseStore)
	if !ok || hello.Kind != wire.KindServer {
		return
	}
	host, auto := hello.Advertise, hello.Advertise == ""
	if auto {
		h, _, err := net.SplitHostPort(remote)
		if err != nil {
			return
		}
		host = h
	}
	cluster, changed, err := as.SetAdvertise(ctx, hello.Name, host, auto)
	if err != nil {
		p.log.Warn("advertised host not recorded", "node", hello.Name, "advertise", host, "err", err)
		return
	}
	if changed {
		p.log.Info("server reached at a new host", "node", hello.Name, "advertise", host, "auto", auto)
		p.Changed(ctx, Scope{Clusters: []string{cluster}})
	}
}
