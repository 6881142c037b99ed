//go:build unix

package upgrade

import (
	"io"
	"net"
	"os"
	"syscall"
)

// rawSocket is conn's socket, to be written without waiting; nil if conn
// has none.
func rawSocket(conn net.Conn) syscall.RawConn {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// writeSocket makes one write(2) to a non-blocking socket, as Go's poller
// keeps it, and reports full instead of waiting when it takes nothing.
func writeSocket(fd uintptr, p []byte) (n int, full bool, err error) {
	for {
		n, err := syscall.Write(int(fd), p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return 0, true, nil
		case err != nil:
			return 0, false, os.NewSyscallError("write", err)
		case n == 0:
			return 0, false, io.ErrShortWrite
		}
		return n, false, nil
	}
}
