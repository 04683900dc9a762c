package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"tandem/backend/domain"
)

// Driller runs failover drills (backend/drill).
type Driller interface {
	Start(ctx context.Context, cluster, actor string, req domain.DrillRequest) (domain.Drill, error)
	Drill(ctx context.Context, id int64) (domain.Drill, error)
	Drills(ctx context.Context, cluster string, limit int) ([]domain.Drill, error)
}

func (h *handler) getCapacity(c *gin.Context) error {
	ctx := c.Request.Context()
	if _, err := h.st.Cluster(ctx, c.Param("name")); err != nil {
		return err
	}
	if h.capacity == nil {
		return unavailable("capacity")
	}
	rep, err := h.capacity.Report(ctx, c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, rep)
	return nil
}

// SeriesView is the history of a cluster's (or a server's) servers and
// the events to mark on the same time axis.
type SeriesView struct {
	From        time.Time                  `json:"from"`
	To          time.Time                  `json:"to"`
	StepSeconds float64                    `json:"step_seconds"`
	Series      map[string][]domain.Sample `json:"series"` // by server
	Marks       []domain.Event             `json:"marks"`  // failovers, failbacks, servers down and up, drills
}

// markTypes are the events drawn on the history's time axis.
var markTypes = []string{domain.EventFailover, domain.EventFailback, domain.EventServerDown, domain.EventServerUp,
	domain.EventSessionLost, domain.EventDrillStarted, domain.EventDrillCompleted, domain.EventDrillFailed, domain.EventCapacityWarning}

// maxSeriesPoints bounds the points per server of one answer; the step
// grows to fit.
const maxSeriesPoints = 2000

func queryTime(c *gin.Context, name string, def time.Time) (time.Time, error) {
	v := c.Query(name)
	if v == "" {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, &badRequestError{field: name, msg: name + " must be an RFC 3339 time, e.g. 2026-12-04T10:00:00Z"}
	}
	return t, nil
}

func (h *handler) getSeries(c *gin.Context) error {
	now := time.Now().UTC()
	to, err := queryTime(c, "to", now)
	if err != nil {
		return err
	}
	from, err := queryTime(c, "from", to.Add(-time.Hour))
	if err != nil {
		return err
	}
	if !from.Before(to) {
		return &badRequestError{field: "from", msg: "from must be before to"}
	}
	if to.Sub(from) > 31*24*time.Hour {
		return &badRequestError{field: "from", msg: "at most 31 days at a time"}
	}
	stepS, err := queryInt(c, "step", 0, 0, 86400)
	if err != nil {
		return err
	}
	step := max(time.Duration(stepS)*time.Second, to.Sub(from)/maxSeriesPoints, time.Second)
	q := domain.SeriesQuery{Cluster: c.Query("cluster"), Server: c.Query("server"), From: from, To: to, Step: step}
	ctx := c.Request.Context()
	if q.Cluster != "" {
		if _, err := h.st.Cluster(ctx, q.Cluster); err != nil {
			return err
		}
	}
	series, err := h.st.Samples(ctx, q)
	if err != nil {
		return err
	}
	evs, err := h.st.EventsBetween(ctx, domain.EventFilter{Types: markTypes, Cluster: q.Cluster, Server: q.Server, Limit: 1000}, from, to)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, SeriesView{From: from, To: to, StepSeconds: step.Seconds(), Series: series, Marks: evs})
	return nil
}

func (h *handler) listFailures(c *gin.Context) error {
	fs, err := h.st.Failures(c.Request.Context())
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, fs)
	return nil
}

func (h *handler) acknowledgeFailures(c *gin.Context) error {
	ctx := c.Request.Context()
	sv, err := h.st.Server(ctx, c.Param("name"))
	if err != nil {
		return err
	}
	n, err := h.st.AcknowledgeFailures(ctx, actor(c), sv.Name)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, gin.H{"server": sv.Name, "acknowledged": n})
	return nil
}

func (h *handler) startDrill(c *gin.Context) error {
	var req domain.DrillRequest
	if err := h.bind(c, &req); err != nil {
		return err
	}
	ctx := c.Request.Context()
	if _, err := h.st.Cluster(ctx, c.Param("name")); err != nil {
		return err
	}
	if h.drills == nil {
		return unavailable("drills")
	}
	d, err := h.drills.Start(ctx, c.Param("name"), actor(c), req)
	if err != nil {
		return err
	}
	c.Header("Location", "/api/v1/drills/"+strconv.FormatInt(d.ID, 10))
	c.JSON(http.StatusAccepted, d)
	return nil
}

func (h *handler) listDrills(c *gin.Context) error {
	ctx := c.Request.Context()
	if _, err := h.st.Cluster(ctx, c.Param("name")); err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", 20, 1, 200)
	if err != nil {
		return err
	}
	if h.drills == nil {
		return unavailable("drills")
	}
	ds, err := h.drills.Drills(ctx, c.Param("name"), int(limit))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, ds)
	return nil
}

func (h *handler) getDrill(c *gin.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id < 1 {
		return domain.NotFound("drill", c.Param("id"))
	}
	if h.drills == nil {
		return unavailable("drills")
	}
	d, err := h.drills.Drill(c.Request.Context(), id)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, d)
	return nil
}
