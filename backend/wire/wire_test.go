package wire

import (
	"errors"
	"testing"

	"tandem/backend/domain"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	in := Config{Revision: 3, Checksum: "x", Server: &ServerConfig{Session: domain.DefaultSessionConfig()}}
	b, err := Encode(TypeConfig, in)
	if err != nil {
		t.Fatal(err)
	}
	e, err := DecodeEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	var out Config
	if err := DecodeBody(e, &out); err != nil {
		t.Fatal(err)
	}
	if out.Revision != 3 || out.Server == nil || out.Server.Session != in.Server.Session {
		t.Fatalf("got %+v", out)
	}
}

func TestRejects(t *testing.T) {
	t.Parallel()
	bad := []string{
		``, `{}`, `[]`, `{"v":2,"type":"hello","body":{}}`,
		`{"v":1,"type":"nope","body":{}}`,
		`{"v":1,"type":"hello","body":{},"extra":1}`,
		`{"v":1,"type":"hello","body":{}} {}`,
	}
	for _, s := range bad {
		if _, err := DecodeEnvelope([]byte(s)); !errors.Is(err, ErrBadMessage) {
			t.Errorf("DecodeEnvelope(%q) = %v, want ErrBadMessage", s, err)
		}
	}
	bodies := map[string]any{
		`{"v":1,"type":"hello","body":{"kind":"server","name":"BAD NAME"}}`:  &Hello{},
		`{"v":1,"type":"hello","body":{"kind":"alien","name":"ms1"}}`:        &Hello{},
		`{"v":1,"type":"heartbeat","body":{"sessions":-1}}`:                  &Heartbeat{},
		`{"v":1,"type":"command","body":{"action":"format","target":"ms1"}}`: &Command{},
		`{"v":1,"type":"config","body":{"revision":1}}`:                      &Config{},
		`{"v":1,"type":"hello","body":{"kind":"server","name":"ms1","x":1}}`: &Hello{},
		`{"v":1,"type":"ack","body":{"revision":1}}`:                         &Hello{},
	}
	for s, out := range bodies {
		e, err := DecodeEnvelope([]byte(s))
		if err != nil {
			t.Fatalf("envelope %q: %v", s, err)
		}
		if err := DecodeBody(e, out); !errors.Is(err, ErrBadMessage) {
			t.Errorf("DecodeBody(%q) = %v, want ErrBadMessage", s, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := Encode(TypeHeartbeat, Heartbeat{State: "running", Sessions: 3})
	f.Add(good)
	f.Add([]byte(`{"v":1,"type":"hello","body":{"kind":"server","name":"ms1"}}`))
	f.Add([]byte(`{"v":1,"type":"config","body":{"server":{}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := DecodeEnvelope(data)
		if err != nil {
			return
		}
		var out any
		switch e.Type {
		case TypeHello:
			out = &Hello{}
		case TypeHeartbeat:
			out = &Heartbeat{}
		case TypeConfig:
			out = &Config{}
		case TypeCommand:
			out = &Command{}
		case TypeEvent:
			out = &EventMsg{}
		default:
			return
		}
		_ = DecodeBody(e, out) // must not panic
	})
}
