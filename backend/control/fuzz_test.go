package control

import (
	"errors"
	"testing"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

// FuzzDecodeNodeMessage feeds the admin end's decoding of node frames:
// it must never panic, and every failure is a wire.ErrBadMessage.
func FuzzDecodeNodeMessage(f *testing.F) {
	for _, m := range []struct {
		typ  string
		body any
	}{
		{wire.TypeHello, wire.Hello{Kind: wire.KindServer, Name: "ms1", PID: 1, Incarnation: "x"}},
		{wire.TypeHeartbeat, wire.Heartbeat{State: "running", Sessions: 3, Processes: []wire.ProcessState{{Name: "ms1"}}}},
		{wire.TypeAck, wire.Ack{Revision: 2, Checksum: "abc", OK: false, Error: "boom"}},
		{wire.TypeCommandResult, wire.CommandResult{ID: "1", OK: true, PID: 9}},
		{wire.TypeEvent, wire.EventMsg{Event: domain.Event{Type: domain.EventFailover, Sessions: 4}}},
		{wire.TypeConfig, wire.Config{}},
	} {
		b, err := wire.Encode(m.typ, m.body)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"v":1,"type":"heartbeat","body":{"sessions":-1}}`))
	f.Add([]byte(`{"v":1,"type":"event","body":{"event":{"type":"x","time":"nope"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := wire.DecodeNodeMessage(data)
		if err != nil {
			if !errors.Is(err, wire.ErrBadMessage) {
				t.Fatalf("error %v is not ErrBadMessage", err)
			}
			return
		}
		switch msg.(type) {
		case *wire.Hello, *wire.Heartbeat, *wire.Ack, *wire.CommandResult, *wire.EventMsg:
		default:
			t.Fatalf("decoded %T, which nodes do not send", msg)
		}
	})
}
