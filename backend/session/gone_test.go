package session

import (
	"bufio"
	"net"
	"net/http"
	"testing"
	"time"
)

// A request read after its client closed the connection (it sat in the
// socket while this process was frozen, and the web server resent it
// elsewhere) is recognised as gone; one whose client waits is not.
func TestClientGone(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 2)
	proceed := make(chan struct{})
	result := make(chan bool, 2)
	srv := &http.Server{ConnContext: WithConn, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-proceed
		result <- ClientGone(r)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	send := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		return c
	}
	waiting := send()
	defer waiting.Close()
	gone := send()
	<-arrived
	<-arrived
	gone.Close() // on loopback the FIN is queued at the server when Close returns
	close(proceed)
	got := map[bool]int{}
	for range 2 {
		got[<-result]++
	}
	if got[true] != 1 || got[false] != 1 {
		t.Fatalf("ClientGone: %v, want one gone and one waiting", got)
	}
	// The waiting client still gets its answer.
	_ = waiting.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(waiting), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("waiting client: %v %v", resp, err)
	}
}
