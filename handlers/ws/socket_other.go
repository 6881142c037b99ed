//go:build !unix

package ws

import "errors"

// socketCallsWork is false where sockets are not Unix descriptors (Windows):
// connections are written through net.Conn, and readers park inside x/net's
// read, with a larger stack, instead of at a shallow point.
const socketCallsWork = false

func writeSocket(int, []byte) (int, error) {
	return 0, errors.New("direct socket writes need a Unix system")
}

func peekWouldBlock(uintptr, []byte) bool { return false }
