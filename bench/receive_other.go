//go:build !linux

package bench

import "net"

// stampArrivals does nothing: kernel receive timestamps are Linux's.
func stampArrivals(uintptr) error { return nil }

// newSocket reads conn with plain reads: kernel receive timestamps are
// Linux's (receive_linux.go).
func newSocket(conn net.Conn) socket { return plainSocket{conn} }

// pollGroup is Linux's (receive_linux.go); elsewhere every subscriber is
// read by a goroutine of its own.
type pollGroup struct{}

func newPollGroups(subs []*subscriber) ([]*pollGroup, []*subscriber) { return nil, subs }

func (*pollGroup) run()          {}
func (*pollGroup) stop()         {}
func (*pollGroup) closeSockets() {}
