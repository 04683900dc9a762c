package api

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"tandem/backend/domain"
	"tandem/backend/pki"
	"tandem/backend/wire"
)

// EnrolRequest asks for a node certificate: the node's name and kind, and
// a certificate request (PEM) for the key it made and keeps.
type EnrolRequest struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	CSR  string `json:"csr"`
}

// EnrolResponse is the node's certificate chain (leaf, then the CA) and
// the CA alone, PEM.
type EnrolResponse struct {
	Certificate string    `json:"certificate"`
	CA          string    `json:"ca"`
	NotAfter    time.Time `json:"not_after"`
}

// enrolNode issues a node its certificate in exchange for the node token
// (once; later it renews with the certificate itself).
func (h *handler) enrolNode(c *gin.Context) error {
	if err := h.auth.CheckEnrol(c.Request); err != nil {
		return err
	}
	if h.pki == nil {
		return unavailable("certificates (this admin server serves plain HTTP)")
	}
	var req EnrolRequest
	if err := h.bind(c, &req); err != nil {
		return err
	}
	blocked, err := h.st.NodeBlocked(c.Request.Context(), req.Name)
	if err != nil {
		return err
	}
	if blocked {
		return domain.Conflict("name", "node %q was revoked; an admin lets it enrol again with POST /api/v1/nodes/%s/allow", req.Name, req.Name)
	}
	return h.issue(c, req.Name, req.Kind, req.CSR, "node.enrol")
}

// renewNode issues a new certificate to a node that presents its valid one.
func (h *handler) renewNode(c *gin.Context) error {
	name, err := h.auth.CheckNode(c.Request)
	if err != nil {
		return err
	}
	if h.pki == nil || name == "" {
		return unavailable("certificates (this admin server serves plain HTTP)")
	}
	var req EnrolRequest
	if err := h.bind(c, &req); err != nil {
		return err
	}
	if req.Name != name {
		return &forbiddenError{msg: "a node renews its own certificate only"}
	}
	return h.issue(c, req.Name, req.Kind, req.CSR, "node.renew")
}

func (h *handler) issue(c *gin.Context, name, kind, csrPEM, action string) error {
	ctx := c.Request.Context()
	hosts, err := h.nodeHosts(ctx, kind, name)
	if err != nil {
		return err
	}
	csr, err := pki.ParseCSR([]byte(csrPEM))
	if err != nil {
		return domain.Invalid("csr", "%s", err.Error())
	}
	// The address the node called from is one it can be reached at.
	if host, _, err := net.SplitHostPort(c.Request.RemoteAddr); err == nil {
		hosts = append(hosts, host)
	}
	leaf, err := h.pki.Issue(name, kind, csr.PublicKey, hosts, h.certLife)
	if err != nil {
		return err
	}
	if err := h.st.RecordCert(ctx, action, name, kind, leaf.Cert.SerialNumber.Text(16), leaf.Cert.NotAfter); err != nil {
		return err
	}
	c.JSON(http.StatusOK, EnrolResponse{Certificate: string(leaf.CertPEM), CA: string(h.pki.CertPEM), NotAfter: leaf.Cert.NotAfter.UTC()})
	return nil
}

// nodeHosts are the host names and addresses the node serves on, from its
// definition; an unknown node is refused (404).
func (h *handler) nodeHosts(ctx context.Context, kind, name string) ([]string, error) {
	var addrs []string
	switch kind {
	case wire.KindServer:
		s, err := h.st.Server(ctx, name)
		if err != nil {
			return nil, err
		}
		addrs = []string{s.Listen, s.InternalListen}
	case wire.KindWebServer:
		w, err := h.st.WebServer(ctx, name)
		if err != nil {
			return nil, err
		}
		addrs = []string{w.Listen}
	case wire.KindNodeManager:
		n, err := h.st.NodeManager(ctx, name)
		if err != nil {
			return nil, err
		}
		addrs = []string{n.Listen}
	default:
		return nil, domain.Invalid("kind", "must be %q, %q or %q", wire.KindServer, wire.KindWebServer, wire.KindNodeManager)
	}
	var hosts []string
	for _, a := range addrs {
		if host, _, err := net.SplitHostPort(a); err == nil && host != "" && !net.ParseIP(host).IsUnspecified() {
			hosts = append(hosts, host)
		}
	}
	return hosts, nil
}

// allowNode lets a revoked node enrol again.
func (h *handler) allowNode(c *gin.Context) error {
	name := c.Param("name")
	if !domain.ValidName(name) {
		return domain.Invalid("name", "not a node name")
	}
	n, err := h.st.AllowNode(c.Request.Context(), actor(c), name)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, gin.H{"node": name, "revoked_certificates": n})
	return nil
}

// revokeNode revokes every certificate of the node and ends its control
// connection: it is refused from now on, until it enrols again.
func (h *handler) revokeNode(c *gin.Context) error {
	name := c.Param("name")
	if !domain.ValidName(name) {
		return domain.Invalid("name", "not a node name")
	}
	n, err := h.st.RevokeNodeCerts(c.Request.Context(), actor(c), name)
	if err != nil {
		return err
	}
	h.revoked(c.Request.Context(), name)
	c.JSON(http.StatusOK, gin.H{"node": name, "revoked": n})
	return nil
}

// revoked ends the control connection of a node whose certificates were
// revoked and sends every node the revocations: its peers refuse it from
// their next handshake on.
func (h *handler) revoked(ctx context.Context, name string) {
	if h.control == nil {
		return
	}
	h.control.Disconnect(name)
	if err := h.control.Revocations(ctx); err != nil {
		h.log.Error("api: send revocations", "err", err)
	}
}

// WitnessRequest asks the admin server about a silent peer.
type WitnessRequest struct {
	Server string `json:"server"`
}

// WitnessAnswer is the admin server's view of that peer: down when its
// control connection is gone or its heartbeats stopped (suspect, failed,
// stopped, or never seen since the admin server started).
type WitnessAnswer struct {
	Server string `json:"server"`
	State  string `json:"state"`
	Down   bool   `json:"down"`
}

// witness answers a managed server that finds a peer on another machine
// silent and sees no majority of its cluster: only the side of a network
// partition that reaches the admin server takes the sessions over.
func (h *handler) witness(c *gin.Context) error {
	asker, err := h.auth.CheckNode(c.Request)
	if err != nil {
		return err
	}
	if h.control == nil {
		return unavailable("control channel")
	}
	var req WitnessRequest
	if err := h.bind(c, &req); err != nil {
		return err
	}
	ctx := c.Request.Context()
	target, err := h.st.Server(ctx, req.Server)
	if err != nil {
		return err
	}
	if asker != "" { // a certificate: a member of the same cluster only
		if from, err := h.st.Server(ctx, asker); err != nil || from.Cluster != target.Cluster || asker == target.Name {
			return &forbiddenError{msg: "only another member of the server's cluster may ask"}
		}
	}
	// Never seen since the admin server started: no state, down.
	live, _ := h.control.Live(target.Name)
	var down bool
	switch live.State {
	case "", domain.StateSuspect, domain.StateFailed, domain.StateStopped:
		down = true
	}
	c.JSON(http.StatusOK, WitnessAnswer{Server: target.Name, State: live.State, Down: down})
	return nil
}
