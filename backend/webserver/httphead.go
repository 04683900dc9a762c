package webserver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Parsing of HTTP/1.x message heads as bytes. The proxy forwards headers as
// the bytes it read (minus hop-by-hop ones), so nothing here builds maps or
// canonicalises names: a header is two slices into the connection's head
// buffer, valid until the next head is read on that connection.

var (
	errHeadTooLarge = errors.New("webserver: message head too large")
	errBadHead      = errors.New("webserver: malformed message head")
	errBadFraming   = errors.New("webserver: conflicting or invalid body framing")
)

type header struct {
	name, value []byte
}

// head is one parsed message head. buf owns the bytes; first and hdrs
// slice into it.
type head struct {
	buf   []byte
	ends  []int
	first []byte
	hdrs  []header
}

// readHead reads one message head (start line and header lines up to the
// empty line) from br, at most max bytes. Empty lines before the start line
// are skipped (RFC 9112 2.2). It reports whether any byte was read.
func readHead(br *bufio.Reader, h *head, max int) (bool, error) {
	h.buf = h.buf[:0]
	h.ends = h.ends[:0]
	h.hdrs = h.hdrs[:0]
	any := false
	lineStart := 0
	for {
		frag, err := br.ReadSlice('\n')
		if len(frag) > 0 {
			any = true
		}
		if len(h.buf)+len(frag) > max {
			return any, errHeadTooLarge
		}
		h.buf = append(h.buf, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && any {
				err = io.ErrUnexpectedEOF
			}
			return any, err
		}
		line := h.buf[lineStart:]
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
			if len(h.ends) == 0 { // leading empty line
				h.buf = h.buf[:lineStart]
				continue
			}
			break
		}
		h.ends = append(h.ends, len(h.buf))
		lineStart = len(h.buf)
	}
	return true, h.parseLines()
}

// headBytes parses one message head from the start of b, at most max
// bytes, for the event loop, which reads into a buffer of its own. It
// returns the bytes the head took, 0 while b holds no complete head yet.
// Empty lines before the start line are skipped as by readHead.
func headBytes(b []byte, h *head, max int) (int, error) {
	h.buf = h.buf[:0]
	h.ends = h.ends[:0]
	h.hdrs = h.hdrs[:0]
	skip := 0
	for {
		switch {
		case len(b) > skip && b[skip] == '\n':
			skip++
			continue
		case len(b) > skip+1 && b[skip] == '\r' && b[skip+1] == '\n':
			skip += 2
			continue
		}
		break
	}
	lineStart := skip
	for i := skip; i < len(b); i++ {
		if i-skip >= max {
			return 0, errHeadTooLarge
		}
		if b[i] != '\n' {
			continue
		}
		line := b[lineStart : i+1]
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
			h.buf = append(h.buf, b[skip:lineStart]...)
			for k := range h.ends {
				h.ends[k] -= skip
			}
			return i + 1, h.parseLines()
		}
		h.ends = append(h.ends, i+1)
		lineStart = i + 1
	}
	if len(b)-skip > max {
		return 0, errHeadTooLarge
	}
	return 0, nil
}

// parseLines splits h.buf (lines ending at h.ends) into the start line and
// the headers.
func (h *head) parseLines() error {
	start := 0
	for i, end := range h.ends {
		line := trimEOL(h.buf[start:end])
		start = end
		if i == 0 {
			h.first = line
			continue
		}
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			return errBadHead // obsolete line folding is rejected
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return errBadHead
		}
		val := trimOWS(line[colon+1:])
		for _, c := range val {
			if c == '\r' || c == 0 || c == '\n' {
				return errBadHead
			}
		}
		h.hdrs = append(h.hdrs, header{name: line[:colon], value: val})
	}
	if len(h.first) == 0 {
		return errBadHead
	}
	return nil
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenTable[c] {
			return false
		}
	}
	return true
}

// Header names the proxy acts on.
const (
	hOther = iota
	hHopByHop
	hConnection
	hContentLength
	hTransferEncoding
	hUpgrade
	hHost
	hCookie
	hExpect
	hXFF
	hXFHost
	hXFProto
	hInternal // X-Tandem-* headers only the tier itself may set: dropped from clients
)

// classify returns the kind of a header name, case-insensitively, without
// allocating.
func classify(name []byte) int {
	switch len(name) {
	case 2:
		if bytes.EqualFold(name, []byte("TE")) {
			return hHopByHop
		}
	case 4:
		if bytes.EqualFold(name, []byte("Host")) {
			return hHost
		}
	case 6:
		if bytes.EqualFold(name, []byte("Cookie")) {
			return hCookie
		}
		if bytes.EqualFold(name, []byte("Expect")) {
			return hExpect
		}
	case 7:
		if bytes.EqualFold(name, []byte("Upgrade")) {
			return hUpgrade
		}
		if bytes.EqualFold(name, []byte("Trailer")) {
			return hHopByHop
		}
	case 10:
		if bytes.EqualFold(name, []byte("Connection")) {
			return hConnection
		}
		if bytes.EqualFold(name, []byte("Keep-Alive")) {
			return hHopByHop
		}
	case 14:
		if bytes.EqualFold(name, []byte("Content-Length")) {
			return hContentLength
		}
	case 15:
		if bytes.EqualFold(name, []byte("X-Forwarded-For")) {
			return hXFF
		}
		if bytes.EqualFold(name, []byte("X-Tandem-Resent")) {
			return hInternal
		}
	case 16:
		if bytes.EqualFold(name, []byte("Proxy-Connection")) {
			return hHopByHop
		}
		if bytes.EqualFold(name, []byte("X-Forwarded-Host")) {
			return hXFHost
		}
	case 17:
		if bytes.EqualFold(name, []byte("Transfer-Encoding")) {
			return hTransferEncoding
		}
		if bytes.EqualFold(name, []byte("X-Forwarded-Proto")) {
			return hXFProto
		}
	case 18:
		if bytes.EqualFold(name, []byte("Proxy-Authenticate")) {
			return hHopByHop
		}
		if bytes.EqualFold(name, []byte("X-Tandem-Forwarded")) {
			return hInternal
		}
	case 19:
		if bytes.EqualFold(name, []byte("Proxy-Authorization")) {
			return hHopByHop
		}
		if bytes.EqualFold(name, []byte("X-Tandem-Request-Id")) {
			return hInternal
		}
	}
	return hOther
}

// hasToken reports whether the comma-separated list v contains tok
// (case-insensitive).
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var part []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			part, v = v, nil
		}
		if bytes.EqualFold(trimOWS(part), []byte(tok)) {
			return true
		}
	}
	return false
}

// listedIn reports whether name is one of the tokens in the Connection
// header values conn (headers named there are hop-by-hop too).
func listedIn(name []byte, conn [][]byte) bool {
	for _, v := range conn {
		for len(v) > 0 {
			var part []byte
			if i := bytes.IndexByte(v, ','); i >= 0 {
				part, v = v[:i], v[i+1:]
			} else {
				part, v = v, nil
			}
			if bytes.EqualFold(trimOWS(part), name) {
				return true
			}
		}
	}
	return false
}

// parseContentLength parses a Content-Length value: digits only.
func parseContentLength(v []byte) (int64, error) {
	if len(v) == 0 || len(v) > 18 {
		return 0, fmt.Errorf("%w: content-length %q", errBadFraming, v)
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: content-length %q", errBadFraming, v)
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// parseChunkSize parses the hex size at the start of a chunk line
// (extensions after ';' are ignored).
func parseChunkSize(line []byte) (int64, error) {
	line = trimEOL(line)
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = trimOWS(line)
	if len(line) == 0 || len(line) > 15 {
		return 0, fmt.Errorf("%w: chunk size", errBadFraming)
	}
	var n int64
	for _, c := range line {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, fmt.Errorf("%w: chunk size", errBadFraming)
		}
		n = n<<4 | int64(d)
	}
	return n, nil
}

// readLine reads one line of at most the reader's buffer size.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, fmt.Errorf("%w: line too long", errBadFraming)
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return line, err
}

// chunkedLen returns the length of the complete chunked body (chunks,
// last chunk and trailer section) at the start of b, 0 while b holds only
// part of it.
func chunkedLen(b []byte) (int, error) {
	off := 0
	for {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return 0, nil
		}
		size, err := parseChunkSize(b[off : off+i+1])
		if err != nil {
			return 0, err
		}
		off += i + 1
		if size == 0 {
			for { // trailer section up to the empty line
				j := bytes.IndexByte(b[off:], '\n')
				if j < 0 {
					return 0, nil
				}
				line := b[off : off+j+1]
				off += j + 1
				if len(trimEOL(line)) == 0 {
					return off, nil
				}
			}
		}
		if int64(len(b)-off) < size+2 {
			return 0, nil
		}
		off += int(size)
		if b[off] != '\r' || b[off+1] != '\n' {
			return 0, fmt.Errorf("%w: chunk data", errBadFraming)
		}
		off += 2
	}
}
