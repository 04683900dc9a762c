package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"

	"tandem/backend/domain"
)

// EventLog is the store's event history, used for replay.
type EventLog interface {
	// Events returns events matching f; with AfterID set, those with a
	// larger ID, at most Limit of them.
	Events(ctx context.Context, f domain.EventFilter) ([]domain.Event, error)
}

// Heartbeat is the frame sent on a quiet stream. ID is the last event ID
// the stream has passed (sent, or the since it started from), usable as the
// next since.
type Heartbeat struct {
	Type string    `json:"type"` // always "heartbeat"
	ID   int64     `json:"id"`
	Time time.Time `json:"time"`
}

// HeartbeatType is the type field of heartbeat frames.
const HeartbeatType = "heartbeat"

// CloseSlow is the WebSocket status a dropped (too slow) stream is closed
// with; the reason says "slow consumer: resume with since=N".
const CloseSlow = websocket.StatusPolicyViolation

// ServeStream upgrades the request to a WebSocket and streams the events
// matching f. With since > 0 it first replays the stored events with an ID
// above since, then goes live with no gap and no duplicate at the seam.
// The caller has authenticated the request. Browser origins other than the
// request's own host are refused. Every frame is one event's JSON, or a
// Heartbeat. It returns when the stream ends.
func (h *Hub) ServeStream(w http.ResponseWriter, r *http.Request, f domain.EventFilter, since int64) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: h.cfg.OriginPatterns})
	if err != nil {
		h.log.Warn("events: stream accept", "err", err)
		return
	}
	defer c.CloseNow()
	if since < 0 {
		since = 0
	}
	// We never expect data from the client; this reader answers pings and
	// close frames and cancels ctx when the peer goes away.
	ctx := c.CloseRead(r.Context())
	code, reason, err := h.stream(ctx, c, f, since)
	if err != nil {
		if !errors.Is(err, context.Canceled) && websocket.CloseStatus(err) == -1 {
			h.log.Debug("events: stream ended", "err", err)
		}
		return
	}
	_ = c.Close(code, reason)
}

// stream runs one client's stream. It returns the close status to send, or
// an error when the connection is already unusable.
func (h *Hub) stream(ctx context.Context, c *websocket.Conn, f domain.EventFilter, since int64) (websocket.StatusCode, string, error) {
	f.AfterID, f.BeforeID, f.Limit = 0, 0, 0
	last := since
	send := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("events: encode frame: %w", err)
		}
		wctx, cancel := context.WithTimeout(ctx, h.cfg.WriteTimeout)
		defer cancel()
		if err := c.Write(wctx, websocket.MessageText, b); err != nil {
			return fmt.Errorf("events: write frame: %w", err)
		}
		return nil
	}

	if since > 0 && h.cfg.Log != nil {
		// A since beyond the newest stored event comes from a client of an
		// earlier database (the data folder was replaced): resume from the
		// newest, or every new event would be skipped as already seen.
		newest, err := h.cfg.Log.Events(ctx, domain.EventFilter{Limit: 1})
		if err != nil {
			return 0, "", fmt.Errorf("events: newest event: %w", err)
		}
		top := int64(0)
		for _, e := range newest {
			top = max(top, e.ID)
		}
		if since > top {
			since, last = top, top
		}
	}
	var sub *Subscription
	for {
		select {
		case <-h.done:
			return websocket.StatusGoingAway, "server shutting down", nil
		default:
		}
		// Subscribe first, then replay: live events that arrive during the
		// replay wait in the subscription's buffer, and those the replay
		// already sent are skipped below by ID.
		sub = h.Subscribe(f)
		if since == 0 || h.cfg.Log == nil {
			break
		}
		if err := h.replay(ctx, f, &last, send); err != nil {
			sub.Close()
			return 0, "", err
		}
		select {
		case <-sub.Dropped():
			// The replay took longer than the buffer covers: replay again
			// from where we are, with a fresh subscription.
			continue
		default:
		}
		break
	}
	defer sub.Close()

	// Pings run beside the writer: a pong waits behind every frame the
	// client has not read yet, so waiting for it must not stall sending.
	ctx, stop := context.WithCancelCause(ctx)
	var pinger sync.WaitGroup
	pinger.Go(func() { h.ping(ctx, c, stop) })
	defer pinger.Wait()
	defer stop(nil)
	quiet := time.NewTimer(h.cfg.HeartbeatInterval)
	defer quiet.Stop()
	for {
		// A drop wins over buffered events only once they are sent: what
		// is in the buffer was delivered in order, so the client's resume
		// point stays exact either way.
		select {
		case e := <-sub.C():
			if e.ID != 0 && e.ID <= last {
				continue
			}
			if err := send(e); err != nil {
				return 0, "", err
			}
			if e.ID > last {
				last = e.ID
			}
			quiet.Reset(h.cfg.HeartbeatInterval)
			continue
		default:
		}
		select {
		case <-ctx.Done():
			return 0, "", context.Cause(ctx)
		case <-h.done:
			return websocket.StatusGoingAway, "server shutting down", nil
		case <-sub.Dropped():
			if len(sub.C()) > 0 {
				continue // send what was buffered first
			}
			return CloseSlow, fmt.Sprintf("slow consumer: resume with since=%d", last), nil
		case e := <-sub.C():
			if e.ID != 0 && e.ID <= last {
				continue
			}
			if err := send(e); err != nil {
				return 0, "", err
			}
			if e.ID > last {
				last = e.ID
			}
			quiet.Reset(h.cfg.HeartbeatInterval)
		case <-quiet.C:
			if err := send(Heartbeat{Type: HeartbeatType, ID: last, Time: time.Now().UTC()}); err != nil {
				return 0, "", err
			}
			quiet.Reset(h.cfg.HeartbeatInterval)
		}
	}
}

// ping pings c every PingInterval until ctx ends; a pong that does not come
// within PongTimeout ends the stream through stop.
func (h *Hub) ping(ctx context.Context, c *websocket.Conn, stop context.CancelCauseFunc) {
	t := time.NewTicker(h.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, h.cfg.PongTimeout)
		err := c.Ping(pctx)
		cancel()
		if err != nil {
			stop(fmt.Errorf("events: ping: %w", err))
			return
		}
	}
}

// replay sends the stored events after *last in pages, advancing *last.
func (h *Hub) replay(ctx context.Context, f domain.EventFilter, last *int64, send func(any) error) error {
	for {
		q := f
		q.AfterID, q.Limit = *last, h.cfg.ReplayPage
		page, err := h.cfg.Log.Events(ctx, q)
		if err != nil {
			return fmt.Errorf("events: replay: %w", err)
		}
		slices.SortFunc(page, func(a, b domain.Event) int {
			switch {
			case a.ID < b.ID:
				return -1
			case a.ID > b.ID:
				return 1
			}
			return 0
		})
		for _, e := range page {
			if e.ID <= *last {
				continue
			}
			if err := send(e); err != nil {
				return err
			}
			*last = e.ID
		}
		if len(page) < h.cfg.ReplayPage {
			return nil
		}
	}
}
