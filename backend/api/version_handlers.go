package api

import (
	"errors"
	"mime"
	"net/http"
	"os"

	"github.com/gin-gonic/gin"

	"tandem/backend/artifacts"
	"tandem/backend/control"
	"tandem/backend/domain"
)

// putVersion stores the request body, a gzipped tar archive, as a version
// of the application: streamed to disk while it is checked, kept by its
// SHA-256. The same version with the same bytes again: 200; other bytes: 409.
func (h *handler) putVersion(c *gin.Context) error {
	name, version := c.Param("name"), c.Param("version")
	if err := domain.CheckVersion("version", version); err != nil {
		return err
	}
	if h.arts == nil {
		return unavailable("application versions")
	}
	if ct := c.GetHeader("Content-Type"); ct != "" {
		mt, _, _ := mime.ParseMediaType(ct)
		switch mt {
		case "application/gzip", "application/x-gzip", "application/octet-stream", "application/x-tar":
		default:
			return badRequest("", "send the archive (.tar.gz) as the body with Content-Type: application/gzip, not "+mt)
		}
	}
	ctx := c.Request.Context()
	app, err := h.st.Application(ctx, name)
	if err != nil {
		return err
	}
	info, err := h.arts.Put(c.Request.Body, app.Command)
	if err != nil {
		if errors.Is(err, artifacts.ErrInvalid) {
			return badRequest("body", err.Error())
		}
		return err
	}
	v, created, err := h.st.AddAppVersion(ctx, actor(c), domain.AppVersion{Application: name, Version: version, SHA256: info.SHA256, Size: info.Size})
	if err != nil {
		if known, kerr := h.st.ArchiveKnown(ctx, info.SHA256); kerr == nil && !known {
			_ = h.arts.Remove(info.SHA256) // nothing stored for a refused upload
		}
		return err
	}
	touched(c, control.Scope{}) // no desired config changed
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		c.Header("Location", "/api/v1/applications/"+name+"/versions/"+version)
	}
	c.JSON(status, v)
	return nil
}

func (h *handler) listVersions(c *gin.Context) error {
	vs, err := h.st.AppVersions(c.Request.Context(), c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, vs)
	return nil
}

func (h *handler) deleteVersion(c *gin.Context) error {
	if h.arts == nil {
		return unavailable("application versions")
	}
	v, shared, err := h.st.DeleteAppVersion(c.Request.Context(), actor(c), c.Param("name"), c.Param("version"))
	if err != nil {
		return err
	}
	if !shared {
		if err := h.arts.Remove(v.SHA256); err != nil {
			h.log.Warn("api: archive of a deleted version not removed", "sha256", v.SHA256, "err", err)
		}
	}
	touched(c, control.Scope{})
	c.Status(http.StatusNoContent)
	return nil
}

// nodeArtifact serves an archive to a node (node token): with ranges, so a
// cut download resumes; the node checks the SHA-256 before it unpacks.
func (h *handler) nodeArtifact(c *gin.Context) error {
	if _, err := h.auth.CheckNode(c.Request); err != nil {
		return err
	}
	if h.arts == nil {
		return unavailable("application versions")
	}
	sum := c.Param("sum")
	p := h.arts.Path(sum)
	if p == "" {
		return domain.NotFound("archive", sum)
	}
	known, err := h.st.ArchiveKnown(c.Request.Context(), sum)
	if err != nil {
		return err
	}
	if !known {
		return domain.NotFound("archive", sum)
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	c.Header("Content-Type", "application/gzip")
	c.Header("Cache-Control", "no-store")
	http.ServeContent(c.Writer, c.Request, "", st.ModTime(), f)
	return nil
}
