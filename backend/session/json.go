package session

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// KindJSON holds any JSON value in Value.S (the attribute form of the
// Tandem-Session header contract and of the sdk package).
const KindJSON byte = 4

// reservedPrefix starts the attribute names the middleware keeps for itself.
const reservedPrefix = "_tandem."

// Errors of the JSON attribute API.
var (
	// ErrTooLarge means a change would take the session over the
	// configured max_session_bytes; nothing was changed.
	ErrTooLarge = errors.New("session: over max_session_bytes")
	// ErrBadPatch means a change is not a JSON object of valid JSON values
	// under allowed names; nothing was changed.
	ErrBadPatch = errors.New("session: bad change")
	// ErrCommitted means the session was stored already because the answer
	// started streaming; later changes cannot be kept.
	ErrCommitted = errors.New("session: already stored: the answer is streaming")
)

// JSON returns attribute key as JSON whatever its kind: a string attribute
// as a JSON string, an int as a number, bytes as a base64 string.
func (s *Session) JSON(key string) (json.RawMessage, bool) {
	if strings.HasPrefix(key, reservedPrefix) {
		return nil, false
	}
	v, ok := s.rec.Attrs[key]
	if !ok {
		return nil, false
	}
	return valueJSON(v), true
}

func valueJSON(v Value) json.RawMessage {
	switch v.Kind {
	case KindJSON:
		return json.RawMessage(v.S)
	case KindInt:
		return json.RawMessage(strconv.FormatInt(v.I, 10))
	case KindBytes:
		b, _ := json.Marshal([]byte(v.S)) // base64; cannot fail
		return b
	default:
		b, _ := json.Marshal(v.S) // a string cannot fail
		return b
	}
}

// AttributesJSON encodes every attribute (reserved ones left out) as one
// JSON object, {} when there are none.
func (s *Session) AttributesJSON() []byte {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, k := range s.Keys() {
		if i > 0 {
			buf.WriteByte(',')
		}
		kb, _ := json.Marshal(k) // a string cannot fail
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(valueJSON(s.rec.Attrs[k]))
	}
	buf.WriteByte('}')
	return buf.Bytes()
}

// ParsePatch decodes a JSON merge patch of attributes: an object whose
// values are any JSON (null deletes the key). Reserved names, empty names
// and invalid JSON are ErrBadPatch.
func ParsePatch(data []byte) (map[string]json.RawMessage, error) {
	var patch map[string]json.RawMessage
	if err := json.Unmarshal(data, &patch); err != nil { // trailing data is an error too
		return nil, fmt.Errorf("%w: not a JSON object: %w", ErrBadPatch, err)
	}
	if patch == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrBadPatch)
	}
	if err := checkNames(patch); err != nil {
		return nil, err
	}
	return patch, nil
}

func checkNames(patch map[string]json.RawMessage) error {
	for k := range patch {
		if k == "" || len(k) > 256 || strings.HasPrefix(k, reservedPrefix) {
			return fmt.Errorf("%w: attribute name %q (empty, over 256 bytes, or reserved %s*)", ErrBadPatch, k, reservedPrefix)
		}
	}
	return nil
}

// DecodePatchHeader decodes a Tandem-Session-Set header value: base64url
// (padded or not) of a JSON merge patch.
func DecodePatchHeader(v string) (map[string]json.RawMessage, error) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(strings.TrimSpace(v), "="))
	if err != nil {
		return nil, fmt.Errorf("%w: not base64url: %w", ErrBadPatch, err)
	}
	return ParsePatch(raw)
}

// ApplyPatch applies a merge patch (from ParsePatch) as one change: either
// every key is set or deleted, or, over max_session_bytes, none is.
func (s *Session) ApplyPatch(patch map[string]json.RawMessage) error {
	if s.committed {
		return ErrCommitted
	}
	if err := checkNames(patch); err != nil {
		return err
	}
	for k, raw := range patch {
		if !json.Valid(raw) {
			return fmt.Errorf("%w: value of %q is not JSON", ErrBadPatch, k)
		}
	}
	size := s.Size()
	for k, raw := range patch {
		if old, ok := s.rec.Attrs[k]; ok {
			size -= attrSize(k, old)
		}
		if !isNull(raw) {
			size += len(k) + len(compactJSON(raw))
		}
	}
	if s.max > 0 && size > s.max {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, size, s.max)
	}
	for k, raw := range patch {
		if isNull(raw) {
			s.Delete(k)
			continue
		}
		s.set(k, Value{Kind: KindJSON, S: compactJSON(raw)})
	}
	return nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func compactJSON(raw json.RawMessage) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw) // already validated by the decoder
	}
	return buf.String()
}

// Size is the bytes the session's attributes take against
// max_session_bytes: every name and value; the reserved attributes the
// middleware keeps (the last reply for retries) are not counted.
func (s *Session) Size() int { return s.rec.Size() }

// Size is the bytes r's attributes take against max_session_bytes (see
// Session.Size).
func (r *Record) Size() int {
	n := 0
	for k, v := range r.Attrs {
		if !strings.HasPrefix(k, reservedPrefix) {
			n += attrSize(k, v)
		}
	}
	return n
}

func attrSize(k string, v Value) int {
	if v.Kind == KindInt {
		return len(k) + 8
	}
	return len(k) + len(v.S)
}
