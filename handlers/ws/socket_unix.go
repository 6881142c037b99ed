//go:build unix

package ws

import "syscall"

// socketCallsWork says that a connection's descriptor can be written and
// peeked at directly.
const socketCallsWork = true

// writeSocket is one write(2) to a non-blocking socket.
func writeSocket(fd int, b []byte) (int, error) { return syscall.Write(fd, b) }

// peekWouldBlock reports whether the socket has nothing to read yet,
// without taking anything from it.
func peekWouldBlock(fd uintptr, buf []byte) bool {
	_, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err == syscall.EAGAIN
}
