package replication

import (
	"encoding/binary"
	"errors"
	"fmt"

	"tandem/backend/session"
)

// Record batches travel in a compact binary form (the hot path of sync
// replication and failback): a magic byte, the sender, then per record an
// op byte and its fields, strings and byte values length-prefixed with
// uvarints. Decoding is strict: short, oversized or trailing data is
// ErrBadBody.

const (
	magic    byte = 0x54 // 'T'
	opPut    byte = 1
	opDrop   byte = 2
	maxBatch      = 100000
	maxStr        = 1 << 20
)

// ErrBadBody is returned for a body that does not decode.
var ErrBadBody = errors.New("replication: bad body")

// Item is one record of a batch: a put (copy or hand-over) or a drop.
type Item struct {
	Op  byte
	Rec *session.Record
}

// Batch is a body of /internal/v1/records.
type Batch struct {
	From  string
	Inc   string
	Items []Item
}

func putStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Encode appends the binary form of b.
func (b *Batch) Encode(dst []byte) []byte {
	dst = append(dst, magic)
	dst = putStr(dst, b.From)
	dst = putStr(dst, b.Inc)
	dst = binary.AppendUvarint(dst, uint64(len(b.Items)))
	for _, it := range b.Items {
		r := it.Rec
		dst = append(dst, it.Op)
		dst = putStr(dst, r.ID)
		dst = putStr(dst, r.Home)
		dst = putStr(dst, r.Owner)
		dst = putStr(dst, r.Backup)
		dst = binary.AppendUvarint(dst, r.Epoch)
		dst = binary.AppendUvarint(dst, r.Version)
		dst = binary.AppendVarint(dst, r.Created)
		dst = binary.AppendVarint(dst, r.Access)
		dst = binary.AppendUvarint(dst, uint64(len(r.Attrs)))
		for k, v := range r.Attrs {
			dst = putStr(dst, k)
			dst = append(dst, v.Kind)
			switch v.Kind {
			case session.KindInt:
				dst = binary.AppendVarint(dst, v.I)
			default:
				dst = putStr(dst, v.S)
			}
		}
	}
	return dst
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrBadBody, what)
	}
}

func (r *reader) byte1() byte {
	if r.err != nil || len(r.b) < 1 {
		r.fail("short")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad uvarint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) str() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > maxStr || n > uint64(len(r.b)) {
		r.fail("string length")
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// DecodeBatch strictly decodes a record batch.
func DecodeBatch(data []byte) (*Batch, error) {
	r := &reader{b: data}
	if r.byte1() != magic {
		return nil, fmt.Errorf("%w: magic", ErrBadBody)
	}
	b := &Batch{From: r.str(), Inc: r.str()}
	n := r.uvarint()
	if r.err == nil && n > maxBatch {
		r.fail("too many items")
	}
	for i := uint64(0); r.err == nil && i < n; i++ {
		op := r.byte1()
		if op != opPut && op != opDrop {
			r.fail("op")
			break
		}
		rec := &session.Record{ID: r.str(), Home: r.str(), Owner: r.str(), Backup: r.str(),
			Epoch: r.uvarint(), Version: r.uvarint(), Created: r.varint(), Access: r.varint()}
		na := r.uvarint()
		if r.err == nil && na > 10000 {
			r.fail("too many attributes")
		}
		rec.Attrs = make(map[string]session.Value, min(na, 64))
		for j := uint64(0); r.err == nil && j < na; j++ {
			k := r.str()
			v := session.Value{Kind: r.byte1()}
			switch v.Kind {
			case session.KindInt:
				v.I = r.varint()
			case session.KindString, session.KindBytes, session.KindJSON:
				v.S = r.str()
			default:
				r.fail("attribute kind")
			}
			rec.Attrs[k] = v
		}
		b.Items = append(b.Items, Item{Op: op, Rec: rec})
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: trailing data", ErrBadBody)
	}
	return b, nil
}
