package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"tandem/backend/control"
	"tandem/backend/domain"
)

// DeployRequest is the body of POST /clusters/{name}/deploy. The From
// fields are filled by the admin server (what the cluster runs now).
type DeployRequest struct {
	Application        string `json:"application"`
	Version            string `json:"version"`
	StepTimeoutSeconds int    `json:"step_timeout_seconds"`
	Rollback           bool   `json:"-"` // POST /clusters/{name}/rollback
	Kind               string `json:"-"`
	FromApplication    string `json:"-"`
	FromVersion        string `json:"-"`
	FromKind           string `json:"-"`
}

// deploy starts a deploy job: one server at a time to application@version
// through the rolling restart's gate; the first failing server goes back
// and the job stops there.
func (h *handler) deploy(c *gin.Context) error {
	var in DeployRequest
	if err := h.bind(c, &in); err != nil {
		return err
	}
	return h.startDeploy(c, in)
}

func (h *handler) startDeploy(c *gin.Context, in DeployRequest) error {
	ctx, name := c.Request.Context(), c.Param("name")
	if in.StepTimeoutSeconds < 0 || in.StepTimeoutSeconds > 3600 {
		return domain.Invalid("step_timeout_seconds", "must be from 0 (default) to 3600")
	}
	cl, err := h.st.Cluster(ctx, name)
	if err != nil {
		return err
	}
	if in.Application == "" && in.Version != "" {
		return domain.Invalid("version", "the built-in sample app has no versions")
	}
	if in.Application != "" {
		app, err := h.st.Application(ctx, in.Application)
		if errors.Is(err, domain.ErrNotFound) {
			return domain.Invalid("application", "no application named %q", in.Application)
		} else if err != nil {
			return err
		}
		in.Kind = app.Kind
		if in.Version != "" {
			if err := domain.CheckVersion("version", in.Version); err != nil {
				return err
			}
			if _, err := h.st.AppVersion(ctx, in.Application, in.Version); errors.Is(err, domain.ErrNotFound) {
				return domain.Invalid("version", "application %q has no version %q", in.Application, in.Version)
			} else if err != nil {
				return err
			}
		}
	}
	if cl.Application == in.Application && cl.AppVersion == in.Version {
		return domain.Conflict("version", "cluster %q runs %s@%s already", name, in.Application, in.Version)
	}
	in.FromApplication, in.FromVersion = cl.Application, cl.AppVersion
	if cl.Application != "" {
		from, err := h.st.Application(ctx, cl.Application)
		if err != nil {
			return err
		}
		in.FromKind = from.Kind
	}
	if h.roller == nil {
		return unavailable("deploys")
	}
	job, err := h.roller.StartDeploy(ctx, name, actor(c), in, time.Duration(in.StepTimeoutSeconds)*time.Second)
	if err != nil {
		return err
	}
	touched(c, control.Scope{}) // the job pushes each step's config
	c.JSON(http.StatusAccepted, job)
	return nil
}
