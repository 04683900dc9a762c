//go:build !linux

package webserver

import "net"

// Without epoll, every client connection is served by a goroutine (see
// loop_linux.go).

type evloop struct{}

type loopMsg struct {
	down        *member
	drain, kill bool
}

func (s *Server) startLoops()         {}
func (s *Server) stopLoops()          {}
func (s *Server) tellLoops(loopMsg)   {}
func (s *Server) adopt(net.Conn) bool { return false }
