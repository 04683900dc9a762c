package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

// callID is a random id for a command or a query.
func callID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// call sends a request of type typ to the node on c and waits for the
// answer with the same id, which the read loop delivers to the waiter
// registered in the map waiters(c) returns (guarded by p.mu). It gives
// up when ctx ends, after limit, or when the connection ends
// (domain.ErrUnavailable).
func call[T any](ctx context.Context, p *Plane, c *conn, waiters func(*conn) map[string]chan T, id, typ string, body any, limit time.Duration) (T, error) {
	var zero T
	ch := make(chan T, 1)
	p.mu.Lock()
	m := waiters(c)
	if _, dup := m[id]; dup {
		p.mu.Unlock()
		return zero, domain.Conflict("id", "%s %q is already running", typ, id)
	}
	m[id] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		if m := waiters(c); m[id] == ch {
			delete(m, id)
		}
		p.mu.Unlock()
	}()
	name := c.node.name
	if err := c.send(typ, body); err != nil {
		return zero, fmt.Errorf("control: %s to %q: %w: %w", typ, name, domain.ErrUnavailable, err)
	}
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	select {
	case res := <-ch:
		return res, nil
	case <-c.ctx.Done():
		return zero, fmt.Errorf("control: %q went away before answering %s %s: %w", name, typ, id, domain.ErrUnavailable)
	case <-cctx.Done():
		return zero, fmt.Errorf("control: %s %s to %q: %w", typ, id, name, cctx.Err())
	}
}

// deliver hands an answer to the waiter for id; false when nobody waits.
// p.mu is held.
func deliver[T any](m map[string]chan T, id string, res T) bool {
	w, ok := m[id]
	if ok {
		delete(m, id)
		w <- res // buffered 1, one answer per waiter
	}
	return ok
}

// queryTimeout bounds a session query: the inspector answers an operator.
const queryTimeout = 5 * time.Second

// Query asks the managed server name about the sessions it holds. A server
// that is not connected, or that goes away before answering, is
// domain.ErrUnavailable.
func (p *Plane) Query(ctx context.Context, name string, q wire.Query) (wire.QueryResult, error) {
	if q.ID == "" {
		q.ID = callID()
	}
	if err := q.Validate(); err != nil {
		return wire.QueryResult{}, &domain.InvalidError{Field: "query", Message: err.Error()}
	}
	c := p.connOfKind(name, wire.KindServer)
	if c == nil {
		return wire.QueryResult{}, fmt.Errorf("control: server %q is not connected: %w", name, domain.ErrUnavailable)
	}
	return call(ctx, p, c, func(c *conn) map[string]chan wire.QueryResult { return c.queries }, q.ID, wire.TypeQuery, q, queryTimeout)
}
