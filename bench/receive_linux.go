package bench

import (
	"net"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// timestampReceiver reads a TCP socket with recvmsg and SO_TIMESTAMPNS, so
// each read also says when the kernel received its last segment. On one
// machine that is the moment the server's write reached the subscriber, which
// is the server's latency without the load generator's own queue: the load
// generator's core is the busier one in a fan-out, since receiving a frame
// (and acknowledging it) costs more than sending it.
type timestampReceiver struct {
	raw  syscall.RawConn
	oob  []byte // heap-allocated, so aligned for the control message header
	read func(fd uintptr) bool

	// The current read's buffer and results, fields rather than a closure's
	// captures so that a read allocates nothing.
	p         []byte
	n, oobn   int
	recvErr   error
	arrivedAt time.Time
}

// stampArrivals asks the kernel to time-stamp what the socket receives.
// stampingDialer sets it before connecting, so that the handshake's reply
// and everything after it carry a time. The kernel turns time-stamping on
// for the whole machine asynchronously (a work item) when the first socket
// asks, so the first segments after that may still come without one, and
// are then timed by their read.
func stampArrivals(fd uintptr) error {
	return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
}

// newReceiver reads a TCP connection with recvmsg, for the timestamps a
// stampingDialer's socket gets, and anything else (TLS) with plain reads.
func newReceiver(conn net.Conn) receiver {
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		return plainReceiver{conn}
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return plainReceiver{conn}
	}
	r := &timestampReceiver{raw: raw, oob: make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))))}
	r.read = r.recvmsg
	return r
}

func (r *timestampReceiver) recv(p []byte) (int, time.Time, error) {
	r.p = p
	err := r.raw.Read(r.read)
	r.p = nil
	if err == nil {
		err = r.recvErr
	}
	if err != nil {
		return 0, time.Time{}, err
	}
	if r.n == 0 {
		return 0, time.Time{}, errClosed
	}
	return r.n, r.arrivedAt, nil
}

// recvmsg is one non-blocking read; false asks Go's poller to wait.
func (r *timestampReceiver) recvmsg(fd uintptr) bool {
	r.n, r.oobn, _, _, r.recvErr = unix.Recvmsg(int(fd), r.p, r.oob, 0)
	if r.recvErr == unix.EAGAIN {
		return false
	}
	r.arrivedAt = time.Time{}
	if r.recvErr == nil && r.oobn >= unix.CmsgLen(int(unsafe.Sizeof(unix.Timespec{}))) {
		header := (*unix.Cmsghdr)(unsafe.Pointer(&r.oob[0]))
		if header.Level == unix.SOL_SOCKET && header.Type == unix.SCM_TIMESTAMPNS {
			stamp := (*unix.Timespec)(unsafe.Pointer(&r.oob[unix.CmsgLen(0)]))
			r.arrivedAt = time.Unix(stamp.Unix())
		}
	}
	return true
}
