//go:build !unix

package upgrade

import (
	"errors"
	"net"
	"syscall"
)

// rawSocket returns nil: here a connection is written with its own Write,
// which waits while the socket is full.
func rawSocket(net.Conn) syscall.RawConn { return nil }

// writeSocket is never called where rawSocket returns nil.
func writeSocket(uintptr, []byte) (int, bool, error) {
	return 0, false, errors.ErrUnsupported
}
