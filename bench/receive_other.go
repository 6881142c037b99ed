//go:build !linux

package bench

import "net"

// stampArrivals does nothing: kernel receive timestamps are Linux's.
func stampArrivals(uintptr) error { return nil }

// newReceiver reads conn with plain reads: kernel receive timestamps are
// Linux's (receive_linux.go).
func newReceiver(conn net.Conn) receiver { return plainReceiver{conn} }
