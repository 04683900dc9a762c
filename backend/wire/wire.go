// Package wire defines the control-channel messages between the admin server
// and its nodes (managed servers, web servers, node managers). Messages are
// JSON text frames on one WebSocket per node, each an Envelope whose Body
// holds the message named by Type. Decoding is strict: unknown fields, wrong
// versions and unknown types are errors, never guesses.
//
// Flow: the node dials /api/v1/nodes/connect with the node token as bearer,
// sends Hello; the admin answers Welcome (or Error, then closes) and at once
// a Config with the node's desired configuration. The node answers every
// Config with an Ack, sends a Heartbeat every Welcome.HeartbeatIntervalMS and
// an EventMsg for everything it observes (the admin acks each recorded
// event with an EventAck; unacked ones are sent again after a reconnect). Node managers also receive Command
// and answer CommandResult.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"tandem/backend/domain"
)

// Version is the protocol version carried in every envelope.
const Version = 1

// MaxMessageBytes bounds one control-channel frame.
const MaxMessageBytes = 4 << 20

// Node kinds.
const (
	KindServer      = "server"
	KindWebServer   = "webserver"
	KindNodeManager = "nodemanager"
)

// Message types.
const (
	TypeHello         = "hello"
	TypeWelcome       = "welcome"
	TypeError         = "error"
	TypeHeartbeat     = "heartbeat"
	TypeConfig        = "config"
	TypeAck           = "ack"
	TypeCommand       = "command"
	TypeCommandResult = "command_result"
	TypeEvent         = "event"
	TypeEventAck      = "event_ack"
	TypeMemberStates  = "member_states"
	TypeQuery         = "query"
	TypeQueryResult   = "query_result"
	TypeRevocations   = "revocations"
)

// Error codes carried in Error (codes, not prose, are matched).
const (
	CodeUnknownNode  = "unknown_node"
	CodeBadMessage   = "bad_message"
	CodeUnauthorized = "unauthorized"
	CodeDuplicate    = "duplicate_connection"
)

// ErrBadMessage wraps every decode failure.
var ErrBadMessage = errors.New("wire: bad message")

// Envelope frames every message.
type Envelope struct {
	V    int             `json:"v"`
	Type string          `json:"type"`
	Body json.RawMessage `json:"body"`
}

// Hello is the node's first message.
type Hello struct {
	Kind            string `json:"kind"`
	Name            string `json:"name"`
	PID             int    `json:"pid"`
	Incarnation     string `json:"incarnation"` // random per process start
	AppliedRevision int64  `json:"applied_revision"`
	AppliedChecksum string `json:"applied_checksum"`
	// Advertise is a managed server's --advertise: the host other machines
	// reach it at (empty: the admin server uses the address the connection
	// came from when the server binds every address).
	Advertise string `json:"advertise,omitempty"`
}

// Welcome accepts a node.
type Welcome struct {
	Name                string `json:"name"`
	HeartbeatIntervalMS int    `json:"heartbeat_interval_ms"`
	HeartbeatTimeoutMS  int    `json:"heartbeat_timeout_ms"`
}

// Error refuses a node or a message; the admin closes after a fatal one.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// PeerState is how a managed server sees one cluster peer.
type PeerState struct {
	Name  string `json:"name"`
	State string `json:"state"` // domain.State*
}

// MemberStates is the admin server's view of a cluster's servers, sent to
// the cluster's web servers whenever one changes state (and when a web
// server connects). Advisory: a web server's own probes still decide
// once they have run; it skips a member the admin calls down at once,
// and tries one the admin calls running before its next probe.
type MemberStates struct {
	Cluster string      `json:"cluster"`
	Members []PeerState `json:"members"`
}

// ProcessState is one process supervised by a node manager.
type ProcessState struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"` // KindServer or KindWebServer
	State    string `json:"state"`
	PID      int    `json:"pid"`
	Restarts int    `json:"restarts"`
	Message  string `json:"message,omitempty"`
}

// Heartbeat carries the node's live state.
type Heartbeat struct {
	State           string `json:"state"` // starting, running, stopping
	PID             int    `json:"pid"`
	Sessions        int    `json:"sessions"`        // sessions this server is primary for
	BackupSessions  int    `json:"backup_sessions"` // copies held for peers
	Backup          string `json:"backup"`          // current backup server name
	AppliedRevision int64  `json:"applied_revision"`
	AppliedChecksum string `json:"applied_checksum"`
	Unprotected     int    `json:"unprotected"`        // sessions with no live backup copy
	Requests        uint64 `json:"requests,omitempty"` // users' requests served since the process started
	LagMS           int64  `json:"lag_ms,omitempty"`   // age of the oldest write not yet copied to the backup
	// Retried and Failed are a web server's requests sent on to another
	// member and answered with its own error page (counters).
	Retried   uint64         `json:"retried,omitempty"`
	Failed    uint64         `json:"failed,omitempty"`
	Peers     []PeerState    `json:"peers,omitempty"`
	Processes []ProcessState `json:"processes,omitempty"`
	// App is a managed server's application; nil from other kinds.
	App *domain.AppStatus `json:"app,omitempty"`
	// Host is a node manager's machine; nil from other kinds.
	Host *domain.HostInfo `json:"host,omitempty"`
}

// Member is one managed server of a cluster as nodes need to know it.
type Member struct {
	Name   string `json:"name"`
	Route  string `json:"route"`
	Listen string `json:"listen"` // the users' requests (the web server's target)
	// Internal is where the member serves its peers (replication, locate,
	// relinquish); empty in a config from before it existed: Listen.
	Internal string `json:"internal,omitempty"`
	Backup   string `json:"backup,omitempty"` // explicit backup, if any
	State    string `json:"state,omitempty"`  // admin's view; advisory only
	// Host is the machine the member runs on (its node manager's name):
	// the ring prefers a backup on another machine.
	Host string `json:"host,omitempty"`
}

// PeerAddr is where peers call the member.
func (m Member) PeerAddr() string {
	if m.Internal != "" {
		return m.Internal
	}
	return m.Listen
}

// ClusterSettings are the cluster fields a node acts on.
type ClusterSettings struct {
	Name                string `json:"name"`
	FailoverMode        string `json:"failover_mode"`
	BackupPolicy        string `json:"backup_policy"`
	HeartbeatIntervalMS int    `json:"heartbeat_interval_ms"`
	HeartbeatTimeoutMS  int    `json:"heartbeat_timeout_ms"`
	// MemberTLS: the web servers reach the members over TLS.
	MemberTLS bool `json:"member_tls,omitempty"`
}

// AppSpec is the application a cluster's servers run (domain.Application
// as nodes need it). A nil *AppSpec is the built-in sample app.
type AppSpec struct {
	Name                  string            `json:"name"`
	Kind                  string            `json:"kind"` // domain.AppProcess or domain.AppGo
	Command               []string          `json:"command"`
	Env                   map[string]string `json:"env,omitempty"`
	HealthPath            string            `json:"health_path"`
	StartTimeoutSeconds   int               `json:"start_timeout_seconds"`
	RequestTimeoutSeconds int               `json:"request_timeout_seconds"`
	// Version, when set, is an uploaded archive: the node fetches it from
	// the admin server (GET /api/v1/nodes/artifacts/SHA256), checks its
	// SHA-256, unpacks it, and runs Command relative to its root.
	Version string `json:"version,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
	Size    int64  `json:"size,omitempty"`
}

// AppSpecOf returns the spec of a at version v (nil: the command as
// defined); nil for a nil a (the sample app).
func AppSpecOf(a *domain.Application, v *domain.AppVersion) *AppSpec {
	if a == nil {
		return nil
	}
	spec := &AppSpec{
		Name: a.Name, Kind: a.Kind, Command: a.Command, Env: a.Env, HealthPath: a.HealthPath,
		StartTimeoutSeconds: a.StartTimeoutSeconds, RequestTimeoutSeconds: a.RequestTimeoutSeconds,
	}
	if v != nil {
		spec.Version, spec.SHA256, spec.Size = v.Version, v.SHA256, v.Size
	}
	return spec
}

// ServerConfig is what a managed server runs with.
type ServerConfig struct {
	Self    Member               `json:"self"`
	Cluster ClusterSettings      `json:"cluster"`
	Members []Member             `json:"members"` // every server of the cluster, self included, by name
	Session domain.SessionConfig `json:"session"`
	// App is the cluster's application; nil runs the server's own handler
	// (the sample app in `tandem server`, the operator's in an SDK binary).
	App *AppSpec `json:"app,omitempty"`
}

// WebServerConfig is the routing table of a web server.
type WebServerConfig struct {
	Name    string          `json:"name"`
	Listen  string          `json:"listen"`
	Cluster ClusterSettings `json:"cluster"`
	// CookieNames lists every session cookie name in use by the members
	// (servers may override it); the first is the cluster default.
	CookieNames []string `json:"cookie_names"`
	Members     []Member `json:"members"`
}

// ProcessSpec is one process a node manager must run.
type ProcessSpec struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"` // KindServer or KindWebServer
	Listen string `json:"listen"`
	// App is the server's application when its kind is domain.AppGo: the
	// node manager then runs App.Command (with the same flags as `tandem
	// server`) instead of its own binary. Nil otherwise.
	App *AppSpec `json:"app,omitempty"`
}

// NodeManagerConfig lists the processes assigned to a node manager.
type NodeManagerConfig struct {
	Name      string        `json:"name"`
	Processes []ProcessSpec `json:"processes"`
}

// Config is the desired configuration of one node. Exactly one of Server,
// WebServer, NodeManager is set, matching the node's kind. Revision is the
// server's session-config revision (0 for other kinds); Checksum covers the
// whole document, so membership changes are acked too.
type Config struct {
	Revision    int64              `json:"revision"`
	Checksum    string             `json:"checksum"`
	Server      *ServerConfig      `json:"server,omitempty"`
	WebServer   *WebServerConfig   `json:"webserver,omitempty"`
	NodeManager *NodeManagerConfig `json:"nodemanager,omitempty"`
}

// Ack answers a Config.
type Ack struct {
	Revision int64  `json:"revision"`
	Checksum string `json:"checksum"`
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
}

// Command actions.
const (
	ActionStart   = "start"
	ActionStop    = "stop"
	ActionRestart = "restart"
	// ActionKill SIGKILLs the process (a crash: the restart policy
	// applies); ActionFreeze SIGSTOPs it for Seconds, then SIGCONTs it.
	// Failover drills use them.
	ActionKill   = "kill"
	ActionFreeze = "freeze"
)

// MaxFreezeSeconds bounds a freeze.
const MaxFreezeSeconds = 60

// Command asks a node manager to act on one of its processes.
type Command struct {
	ID      string `json:"id"`
	Action  string `json:"action"`
	Target  string `json:"target"`
	Seconds int    `json:"seconds,omitempty"` // ActionFreeze
}

// CommandResult answers a Command.
type CommandResult struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	PID   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

// EventMsg reports a domain event observed by a node; the admin assigns the
// ID and fills Cluster when empty. Seq (growing per node process) lets the
// admin ack it with EventAck and drop a resent duplicate; 0 means unacked.
type EventMsg struct {
	Event domain.Event `json:"event"`
	Seq   uint64       `json:"seq,omitempty"`
}

// EventAck tells a node that its events up to Seq are recorded, so it may
// forget them; unacked events are sent again after a reconnect.
type EventAck struct {
	Seq uint64 `json:"seq"`
}

// Revocations lists the node certificates the admin server revoked (serial
// numbers, hex) that have not expired: nodes refuse peers presenting one.
// Sent to every node when it connects and whenever the list changes.
type Revocations struct {
	Serials []string `json:"serials"`
}

// Query kinds.
const (
	QuerySession  = "session"  // one session by id
	QuerySessions = "sessions" // the sessions a server owns, paged
)

// MaxQueryLimit bounds a page of QuerySessions.
const MaxQueryLimit = 500

// Query asks a managed server about the sessions it holds (the session
// inspector). It is answered by a QueryResult with the same ID.
type Query struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Session string `json:"session,omitempty"` // QuerySession
	Values  bool   `json:"values,omitempty"`  // include attribute values
	Offset  int    `json:"offset,omitempty"`  // QuerySessions
	Limit   int    `json:"limit,omitempty"`   // QuerySessions
}

// QueryResult answers a Query: the matching sessions this server holds
// (as owner or as a copy, said by the one entry of each one's Copies)
// and, for QuerySessions, how many it owns.
type QueryResult struct {
	ID       string               `json:"id"`
	OK       bool                 `json:"ok"`
	Error    string               `json:"error,omitempty"`
	Sessions []domain.SessionInfo `json:"sessions,omitempty"`
	Total    int                  `json:"total"`
}

// Validate checks a Query.
func (q *Query) Validate() error {
	if q.ID == "" || len(q.ID) > 64 {
		return errors.New("id missing or long")
	}
	switch q.Kind {
	case QuerySession:
		if q.Session == "" || len(q.Session) > 256 {
			return errors.New("session id missing or long")
		}
	case QuerySessions:
		if q.Offset < 0 || q.Limit < 1 || q.Limit > MaxQueryLimit {
			return fmt.Errorf("offset %d, limit %d out of range", q.Offset, q.Limit)
		}
	default:
		return fmt.Errorf("kind %q", q.Kind)
	}
	return nil
}

// Encode wraps body in an envelope of type t.
func Encode(t string, body any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("wire: encode %s: %w", t, err)
	}
	return json.Marshal(Envelope{V: Version, Type: t, Body: b})
}

// DecodeEnvelope strictly decodes one frame.
func DecodeEnvelope(data []byte) (Envelope, error) {
	var e Envelope
	if len(data) > MaxMessageBytes {
		return e, fmt.Errorf("%w: frame of %d bytes", ErrBadMessage, len(data))
	}
	if err := strict(data, &e); err != nil {
		return e, err
	}
	if e.V != Version {
		return e, fmt.Errorf("%w: version %d, want %d", ErrBadMessage, e.V, Version)
	}
	if _, ok := bodies[e.Type]; !ok {
		return e, fmt.Errorf("%w: unknown type %q", ErrBadMessage, e.Type)
	}
	return e, nil
}

// DecodeAdminMessage strictly decodes one frame sent by the admin server
// into a pointer to its wire type; frames only nodes send are bad.
func DecodeAdminMessage(data []byte) (any, error) {
	return decodeFrom(data, "the admin server", map[string]func() any{
		TypeWelcome:      func() any { return &Welcome{} },
		TypeError:        func() any { return &Error{} },
		TypeConfig:       func() any { return &Config{} },
		TypeCommand:      func() any { return &Command{} },
		TypeEventAck:     func() any { return &EventAck{} },
		TypeMemberStates: func() any { return &MemberStates{} },
		TypeQuery:        func() any { return &Query{} },
		TypeRevocations:  func() any { return &Revocations{} },
	})
}

// DecodeNodeMessage strictly decodes one frame sent by a node into a
// pointer to its wire type; frames only the admin server sends are bad.
func DecodeNodeMessage(data []byte) (any, error) {
	return decodeFrom(data, "nodes", map[string]func() any{
		TypeHello:         func() any { return &Hello{} },
		TypeHeartbeat:     func() any { return &Heartbeat{} },
		TypeAck:           func() any { return &Ack{} },
		TypeCommandResult: func() any { return &CommandResult{} },
		TypeEvent:         func() any { return &EventMsg{} },
		TypeQueryResult:   func() any { return &QueryResult{} },
	})
}

// decodeFrom decodes a frame whose type must be one that sender sends.
func decodeFrom(data []byte, sender string, types map[string]func() any) (any, error) {
	env, err := DecodeEnvelope(data)
	if err != nil {
		return nil, err
	}
	mk, ok := types[env.Type]
	if !ok {
		return nil, fmt.Errorf("%w: %q is not sent by %s", ErrBadMessage, env.Type, sender)
	}
	out := mk()
	if err := DecodeBody(env, out); err != nil {
		return nil, err
	}
	return out, nil
}

// DecodeBody strictly decodes e.Body into out, which must be the type for e.Type.
func DecodeBody(e Envelope, out any) error {
	if want := bodies[e.Type]; want == "" || fmt.Sprintf("%T", out) != want {
		return fmt.Errorf("%w: %s body into %T", ErrBadMessage, e.Type, out)
	}
	if err := strict(e.Body, out); err != nil {
		return err
	}
	if v, ok := out.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrBadMessage, e.Type, err)
		}
	}
	return nil
}

var bodies = map[string]string{
	TypeHello:         "*wire.Hello",
	TypeWelcome:       "*wire.Welcome",
	TypeError:         "*wire.Error",
	TypeHeartbeat:     "*wire.Heartbeat",
	TypeConfig:        "*wire.Config",
	TypeAck:           "*wire.Ack",
	TypeCommand:       "*wire.Command",
	TypeCommandResult: "*wire.CommandResult",
	TypeEvent:         "*wire.EventMsg",
	TypeEventAck:      "*wire.EventAck",
	TypeMemberStates:  "*wire.MemberStates",
	TypeQuery:         "*wire.Query",
	TypeQueryResult:   "*wire.QueryResult",
	TypeRevocations:   "*wire.Revocations",
}

func strict(data []byte, out any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data", ErrBadMessage)
	}
	return nil
}

// Validate checks a Hello.
func (h *Hello) Validate() error {
	switch h.Kind {
	case KindServer, KindWebServer, KindNodeManager:
	default:
		return fmt.Errorf("kind %q", h.Kind)
	}
	if !domain.ValidName(h.Name) {
		return fmt.Errorf("name %q", h.Name)
	}
	if h.PID < 0 || h.AppliedRevision < 0 || len(h.Incarnation) > 64 {
		return errors.New("negative pid or revision, or long incarnation")
	}
	return nil
}

// Validate checks a Heartbeat.
func (h *Heartbeat) Validate() error {
	if h.PID < 0 || h.Sessions < 0 || h.BackupSessions < 0 || h.AppliedRevision < 0 || h.Unprotected < 0 {
		return errors.New("negative counter")
	}
	if h.Backup != "" && !domain.ValidName(h.Backup) {
		return fmt.Errorf("backup %q", h.Backup)
	}
	if h.Host != nil && (len(h.Host.Name) > 253 || len(h.Host.Addresses) > 64 || h.Host.CPUs < 0) {
		return errors.New("host info out of bounds")
	}
	return nil
}

// Validate checks a Command.
func (c *Command) Validate() error {
	switch c.Action {
	case ActionStart, ActionStop, ActionRestart, ActionKill:
	case ActionFreeze:
		if c.Seconds < 1 || c.Seconds > MaxFreezeSeconds {
			return fmt.Errorf("freeze seconds %d: 1 to %d", c.Seconds, MaxFreezeSeconds)
		}
	default:
		return fmt.Errorf("action %q", c.Action)
	}
	if !domain.ValidName(c.Target) {
		return fmt.Errorf("target %q", c.Target)
	}
	return nil
}

// Validate checks an EventMsg.
func (m *EventMsg) Validate() error {
	if m.Event.Type == "" || len(m.Event.Type) > 64 || len(m.Event.Message) > 4096 {
		return errors.New("event type missing or fields too long")
	}
	if m.Event.Sessions < 0 {
		return errors.New("negative sessions")
	}
	return nil
}

// Validate checks a Config: exactly one section.
func (c *Config) Validate() error {
	n := 0
	for _, set := range []bool{c.Server != nil, c.WebServer != nil, c.NodeManager != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("config must have exactly one section, has %d", n)
	}
	if c.Server != nil {
		if err := c.Server.Session.Validate(); err != nil {
			return err
		}
	}
	return nil
}
