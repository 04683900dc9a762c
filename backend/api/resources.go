package api

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"tandem/backend/control"
	"tandem/backend/domain"
	"tandem/backend/store"
)

// resource declares one kind of /api/v1 resource addressed by name: its
// store calls and the nodes a write touches. Its handlers are the same for
// every kind (decode → the store validates and writes, with the state
// before in the same transaction → respond); a new kind is a declaration.
type resource[T any] struct {
	path   string // collection path, e.g. "/api/v1/servers"
	name   func(*T) *string
	list   func(st *store.Store, c *gin.Context) ([]T, error)
	get    func(*store.Store, context.Context, string) (T, error)
	create func(*store.Store, context.Context, string, T) (T, error)
	update func(*store.Store, context.Context, string, T) (T, error)
	remove func(*store.Store, context.Context, string, string) error
	// scope is what a write touched: the resource before it (zero for a
	// create) and after it (zero for a delete).
	scope func(before, after T) control.Scope
	// check, if set, refuses what the store cannot judge (this admin
	// server's own setup) before a create or a replace.
	check func(h *handler, x *T) error
	// node: the kind is a node (it holds a certificate): deleting it
	// revokes that certificate and ends its control connection.
	node bool
}

func (r resource[T]) listHandler(h *handler) gin.HandlerFunc {
	return h.wrap(func(c *gin.Context) error {
		xs, err := r.list(h.st, c)
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, xs)
		return nil
	})
}

func (r resource[T]) getHandler(h *handler) gin.HandlerFunc {
	return h.wrap(func(c *gin.Context) error {
		x, err := r.get(h.st, c.Request.Context(), c.Param("name"))
		if err != nil {
			return err
		}
		c.JSON(http.StatusOK, x)
		return nil
	})
}

func (r resource[T]) createHandler(h *handler) gin.HandlerFunc {
	return h.wrap(func(c *gin.Context) error {
		var in T
		if err := h.bind(c, &in); err != nil {
			return err
		}
		if r.check != nil {
			if err := r.check(h, &in); err != nil {
				return err
			}
		}
		out, err := r.create(h.st, c.Request.Context(), actor(c), in)
		if err != nil {
			return err
		}
		var zero T
		touched(c, r.scope(zero, out))
		c.Header("Location", r.path+"/"+*r.name(&out))
		c.JSON(http.StatusCreated, out)
		return nil
	})
}

func (r resource[T]) putHandler(h *handler) gin.HandlerFunc {
	return h.wrap(func(c *gin.Context) error {
		var in T
		if err := h.bind(c, &in); err != nil {
			return err
		}
		if err := nameFromPath(c, r.name(&in)); err != nil {
			return err
		}
		if r.check != nil {
			if err := r.check(h, &in); err != nil {
				return err
			}
		}
		var out T
		before, err := beforeWrite(c, h.st, r.get, *r.name(&in), func(tx *store.Store, _ T) (err error) {
			out, err = r.update(tx, c.Request.Context(), actor(c), in)
			return err
		})
		if err != nil {
			return err
		}
		touched(c, r.scope(before, out))
		c.JSON(http.StatusOK, out)
		return nil
	})
}

func (r resource[T]) deleteHandler(h *handler) gin.HandlerFunc {
	return h.wrap(func(c *gin.Context) error {
		before, err := beforeWrite(c, h.st, r.get, c.Param("name"), func(tx *store.Store, x T) error {
			return r.remove(tx, c.Request.Context(), actor(c), *r.name(&x))
		})
		if err != nil {
			return err
		}
		var zero T
		touched(c, r.scope(before, zero))
		if r.node {
			h.revoked(c.Request.Context(), *r.name(&before))
		}
		c.Status(http.StatusNoContent)
		return nil
	})
}

// The resource kinds.
var (
	clusters = resource[domain.Cluster]{
		path: "/api/v1/clusters", name: func(x *domain.Cluster) *string { return &x.Name },
		list: func(st *store.Store, c *gin.Context) ([]domain.Cluster, error) {
			return st.Clusters(c.Request.Context())
		},
		get: (*store.Store).Cluster, create: (*store.Store).CreateCluster, update: (*store.Store).UpdateCluster, remove: (*store.Store).DeleteCluster,
		scope: func(before, after domain.Cluster) control.Scope {
			return control.Scope{Clusters: names(before.Name, after.Name)}
		},
		check: (*handler).checkCluster,
	}
	servers = resource[domain.Server]{
		path: "/api/v1/servers", name: func(x *domain.Server) *string { return &x.Name },
		list: func(st *store.Store, c *gin.Context) ([]domain.Server, error) {
			return st.Servers(c.Request.Context(), c.Query("cluster"))
		},
		get: (*store.Store).Server, create: (*store.Store).CreateServer, update: (*store.Store).UpdateServer, remove: (*store.Store).DeleteServer,
		scope: func(before, after domain.Server) control.Scope {
			return placed(placement{before.Cluster, before.NodeManager}, placement{after.Cluster, after.NodeManager})
		},
		node: true,
	}
	webServers = resource[domain.WebServer]{
		path: "/api/v1/webservers", name: func(x *domain.WebServer) *string { return &x.Name },
		list: func(st *store.Store, c *gin.Context) ([]domain.WebServer, error) {
			return st.WebServers(c.Request.Context(), c.Query("cluster"))
		},
		get: (*store.Store).WebServer, create: (*store.Store).CreateWebServer, update: (*store.Store).UpdateWebServer, remove: (*store.Store).DeleteWebServer,
		scope: func(before, after domain.WebServer) control.Scope {
			return placed(placement{before.Cluster, before.NodeManager}, placement{after.Cluster, after.NodeManager})
		},
		node: true,
	}
	nodeManagers = resource[domain.NodeManager]{
		path: "/api/v1/node-managers", name: func(x *domain.NodeManager) *string { return &x.Name },
		list: func(st *store.Store, c *gin.Context) ([]domain.NodeManager, error) {
			return st.NodeManagers(c.Request.Context())
		},
		get: (*store.Store).NodeManager, create: (*store.Store).CreateNodeManager, update: (*store.Store).UpdateNodeManager, remove: (*store.Store).DeleteNodeManager,
		scope: func(before, after domain.NodeManager) control.Scope {
			return control.Scope{NodeManagers: names(before.Name, after.Name)}
		},
		node: true,
	}
	applications = resource[domain.Application]{
		path: "/api/v1/applications", name: func(x *domain.Application) *string { return &x.Name },
		list: func(st *store.Store, c *gin.Context) ([]domain.Application, error) {
			return st.Applications(c.Request.Context())
		},
		get: (*store.Store).Application, create: (*store.Store).CreateApplication, update: (*store.Store).UpdateApplication, remove: (*store.Store).DeleteApplication,
		// An application reaches the servers of the clusters that run it,
		// and, for kind go, their node managers: a rare write, so every
		// node is re-checked rather than looking them up.
		scope: func(_, _ domain.Application) control.Scope { return control.Everything },
	}
)

// names lists the non-empty names once each.
func names(a, b string) []string {
	var out []string
	for _, n := range []string{a, b} {
		if n != "" && (len(out) == 0 || out[0] != n) {
			out = append(out, n)
		}
	}
	return out
}
