package control

import (
	"context"
	"fmt"

	"tandem/backend/wire"
)

// revocationSource is the part of the store that lists revoked node
// certificates (a plain-HTTP domain has none).
type revocationSource interface {
	RevokedSerials(ctx context.Context) ([]string, error)
}

// Revocations reads the revoked node certificates afresh and sends the
// list to every connected node, which refuses peers presenting one; a node
// that connects later gets it then.
func (p *Plane) Revocations(ctx context.Context) error {
	rs, ok := p.cfg.Store.(revocationSource)
	if !ok {
		return nil
	}
	serials, err := rs.RevokedSerials(ctx)
	if err != nil {
		return fmt.Errorf("control: revocations: %w", err)
	}
	if serials == nil {
		serials = []string{}
	}
	p.mu.Lock()
	prev := p.revoked
	p.revoked = serials
	var conns []*conn
	// Nodes hear of a change only: they start with an empty list.
	if len(prev) > 0 || len(serials) > 0 {
		for _, n := range p.nodes {
			if n.conn != nil {
				conns = append(conns, n.conn)
			}
		}
	}
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.send(wire.TypeRevocations, wire.Revocations{Serials: serials}) // a failed write ends that connection
	}
	return nil
}

// sendRevocations gives a node that just connected the current list, if
// any certificate is revoked (a node starts with an empty one).
func (p *Plane) sendRevocations(c *conn) {
	p.mu.Lock()
	serials := p.revoked
	p.mu.Unlock()
	if len(serials) > 0 {
		_ = c.send(wire.TypeRevocations, wire.Revocations{Serials: serials})
	}
}
