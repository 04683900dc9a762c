package api

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"tandem/backend/auth"
	"tandem/backend/domain"
)

// LoginRequest is a console login.
type LoginRequest struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

// Me describes the caller; CSRFToken is set for cookie sessions.
type Me struct {
	Name      string `json:"name"`
	Role      string `json:"role"`
	Auth      string `json:"auth"` // "session" or "token"
	CSRFToken string `json:"csrf_token,omitempty"`
}

func (h *handler) login(c *gin.Context) error {
	var in LoginRequest
	if err := h.bind(c, &in); err != nil {
		return err
	}
	u, csrf, err := h.auth.Login(c.Writer, c.Request, in.Name, in.Password)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, Me{Name: u.Name, Role: u.Role, Auth: "session", CSRFToken: csrf})
	return nil
}

func (h *handler) logout(c *gin.Context) error {
	if err := h.auth.Logout(c.Writer, c.Request); err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

func (h *handler) me(c *gin.Context) error {
	id, _ := auth.IdentityFrom(c)
	m := Me{Name: id.Name, Role: id.Role, Auth: "token"}
	if id.Session != nil {
		m.Auth, m.CSRFToken = "session", id.Session.CSRFToken
	}
	c.JSON(http.StatusOK, m)
	return nil
}

// ---- users ----

// UserRequest creates or changes a user. On PUT, an empty password keeps
// the current one.
type UserRequest struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Password string `json:"password"`
}

func (h *handler) listUsers(c *gin.Context) error {
	us, err := h.st.Users(c.Request.Context())
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, us)
	return nil
}

func (h *handler) getUser(c *gin.Context) error {
	u, _, err := h.st.User(c.Request.Context(), c.Param("name"))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, u)
	return nil
}

func (h *handler) createUser(c *gin.Context) error {
	var in UserRequest
	if err := h.bind(c, &in); err != nil {
		return err
	}
	if err := domain.CheckName("name", in.Name); err != nil {
		return err
	}
	if !domain.ValidRole(in.Role) {
		return domain.Invalid("role", "must be admin, operator or viewer")
	}
	hash, err := auth.HashPassword(in.Password)
	if err != nil {
		return err
	}
	u, err := h.st.CreateUser(c.Request.Context(), actor(c), domain.User{Name: in.Name, Role: in.Role}, hash)
	if err != nil {
		return err
	}
	c.Header("Location", "/api/v1/users/"+u.Name)
	c.JSON(http.StatusCreated, u)
	return nil
}

func (h *handler) putUser(c *gin.Context) error {
	var in UserRequest
	if err := h.bind(c, &in); err != nil {
		return err
	}
	if err := nameFromPath(c, &in.Name); err != nil {
		return err
	}
	if !domain.ValidRole(in.Role) {
		return domain.Invalid("role", "must be admin, operator or viewer")
	}
	var hash string
	if in.Password != "" {
		var err error
		if hash, err = auth.HashPassword(in.Password); err != nil {
			return err
		}
	}
	u, err := h.st.UpdateUser(c.Request.Context(), actor(c), domain.User{Name: in.Name, Role: in.Role}, hash)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, u)
	return nil
}

func (h *handler) deleteUser(c *gin.Context) error {
	if err := h.st.DeleteUser(c.Request.Context(), actor(c), c.Param("name")); err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

// ---- tokens ----

// TokenRequest creates an API token.
type TokenRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// ExpiresAt, if set, is when the token stops working (RFC 3339, in the
	// future, within 10 years).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// NewToken is a created token with its secret, shown this once.
type NewToken struct {
	domain.Token
	Secret string `json:"token"`
}

func (h *handler) listTokens(c *gin.Context) error {
	ts, err := h.st.Tokens(c.Request.Context())
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, ts)
	return nil
}

func (h *handler) createToken(c *gin.Context) error {
	var in TokenRequest
	if err := h.bind(c, &in); err != nil {
		return err
	}
	secret, hash, err := auth.NewSecret()
	if err != nil {
		return err
	}
	t, err := h.st.CreateTokenExpiring(c.Request.Context(), actor(c), in.Name, in.Role, hash, in.ExpiresAt)
	if err != nil {
		return err
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusCreated, NewToken{Token: t, Secret: secret})
	return nil
}

func (h *handler) deleteToken(c *gin.Context) error {
	if err := h.st.DeleteToken(c.Request.Context(), actor(c), c.Param("name")); err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}
