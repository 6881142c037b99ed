package bench

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux the load generator reads each socket with recvmsg and
// SO_TIMESTAMPNS, so each read also says when the kernel received its last
// segment. On one machine that is the moment the server's write reached the
// subscriber, which is the server's latency without the load generator's
// own queue: the load generator's core is the busier one in a fan-out,
// since receiving a frame (and acknowledging it) costs more than sending it.

// stampArrivals asks the kernel to time-stamp what the socket receives.
// stampingDialer sets it before connecting, so that the handshake's reply
// and everything after it carry a time. The kernel turns time-stamping on
// for the whole machine asynchronously (a work item) when the first socket
// asks, so the first segments after that may still come without one, and
// are then timed by their read.
func stampArrivals(fd uintptr) error {
	return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
}

// newStampSpace makes room for one receive timestamp's control message,
// heap-allocated so that it is aligned for the header.
func newStampSpace() []byte {
	return make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))))
}

// recvStamped is one non-blocking recvmsg of fd into p, with the kernel's
// receive time when it gave one (the zero time otherwise). oob holds the
// time's control message.
func recvStamped(fd int, p, oob []byte) (n int, arrived time.Time, err error) {
	n, oobn, _, _, err := unix.Recvmsg(fd, p, oob, 0)
	if err != nil {
		return 0, time.Time{}, err
	}
	if oobn >= unix.CmsgLen(int(unsafe.Sizeof(unix.Timespec{}))) {
		header := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if header.Level == unix.SOL_SOCKET && header.Type == unix.SCM_TIMESTAMPNS {
			stamp := (*unix.Timespec)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
			arrived = time.Unix(stamp.Unix())
		}
	}
	return n, arrived, nil
}

// newSocket reads a TCP connection with recvmsg, for the timestamps a
// stampingDialer's socket gets, and anything else (TLS) with plain reads.
func newSocket(conn net.Conn) socket {
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		return plainSocket{conn}
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return plainSocket{conn}
	}
	s := &stampedSocket{conn: conn, raw: raw, oob: newStampSpace()}
	s.read = s.recvmsg
	return s
}

// stampedSocket reads a TCP connection through Go's poller, one goroutine
// per subscriber, with the kernel's receive times. A pollGroup reads more
// cheaply; this is for a subscriber read on its own (subscriber.read).
type stampedSocket struct {
	conn net.Conn
	raw  syscall.RawConn
	oob  []byte
	read func(fd uintptr) bool

	// The current read's buffer and results, fields rather than a closure's
	// captures so that a read allocates nothing.
	p         []byte
	n         int
	recvErr   error
	arrivedAt time.Time
}

func (s *stampedSocket) recv(p []byte) (int, time.Time, error) {
	s.p = p
	err := s.raw.Read(s.read)
	s.p = nil
	if err == nil {
		err = s.recvErr
	}
	if err != nil {
		return 0, time.Time{}, err
	}
	if s.n == 0 {
		return 0, time.Time{}, errClosed
	}
	return s.n, s.arrivedAt, nil
}

// recvmsg is one non-blocking read; false asks Go's poller to wait.
func (s *stampedSocket) recvmsg(fd uintptr) bool {
	s.n, s.arrivedAt, s.recvErr = recvStamped(int(fd), s.p, s.oob)
	return s.recvErr != unix.EAGAIN
}

func (s *stampedSocket) send(p []byte) error {
	_, err := s.conn.Write(p)
	return err
}

// pollGroup reads many subscribers from one goroutine. It waits on an
// epoll instance of its own, edge-triggered, and reads each socket that
// epoll reports once: a read that leaves room in its buffer has emptied
// the socket, and anything that arrives later is a new edge.
//
// Read through Go's poller, each frame costs two recvmsg calls (the one
// that gets it and the one that finds the socket empty before the
// goroutine parks) and a goroutine switch. The load generator's core is
// the busier one in a fan-out, and the time it takes to go round 1,000
// subscribers was then part of the read latency it reported: in the
// steady scenario a server whose frames all arrived within 5 ms still had
// its last one read after 7.5 ms. Here a frame costs one recvmsg, and a
// batch of ready sockets one epoll_wait.
//
// The epoll instance is itself waited on through Go's poller, so a group
// holds no thread while nothing is ready, and stop ends it by closing it.
type pollGroup struct {
	epoll    *os.File // for Go's poller; never its Fd, which would make it blocking
	epollFD  int
	raw      syscall.RawConn
	subs     map[int32]*subscriber // by descriptor, while being read
	finished []int32               // sockets of subscribers that have every message, open until closeSockets
	events   []unix.EpollEvent
	oob      []byte // shared by the group's sockets: one goroutine reads them
	wait     func(fd uintptr) bool
	ready    int   // from the last epoll_wait
	waitErr  error // from the last epoll_wait
}

// polledSocket is a subscriber's socket once a pollGroup owns it: a
// descriptor of its own, outside Go's poller.
type polledSocket struct {
	fd  int
	oob []byte
}

func (p *polledSocket) recv(b []byte) (int, time.Time, error) {
	n, arrived, err := recvStamped(p.fd, b, p.oob)
	if err == nil && n == 0 {
		return 0, time.Time{}, errClosed
	}
	return n, arrived, err
}

// send writes a pong or close whole. The socket is non-blocking and these
// are small, so it is full only when the server stopped reading; then it
// waits for room, up to pongTimeout.
func (p *polledSocket) send(b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(p.fd, b)
		switch {
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			ready, err := unix.Poll([]unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLOUT}}, int(pongTimeout/time.Millisecond))
			if err != nil && err != unix.EINTR {
				return err
			}
			if ready == 0 && err == nil {
				return errPongTimeout
			}
		case err != nil:
			return err
		default:
			b = b[n:]
		}
	}
	return nil
}

const pongTimeout = 10 * time.Second

var errPongTimeout = errors.New("the server took no data for 10 s: a pong could not be sent")

// newPollGroups takes over the TCP subscribers' sockets, a group for each
// of the load generator's cores, and returns the subscribers they cannot
// take (TLS), to be read one goroutine each. Without epoll, it takes none.
func newPollGroups(subs []*subscriber) (groups []*pollGroup, rest []*subscriber) {
	for range min(runtime.GOMAXPROCS(0), len(subs)) {
		g, err := newPollGroup()
		if err != nil {
			break
		}
		groups = append(groups, g)
	}
	if len(groups) == 0 {
		return nil, subs
	}
	next := 0
	for _, s := range subs {
		if !groups[next%len(groups)].adopt(s) {
			rest = append(rest, s)
			continue
		}
		next++
	}
	return groups, rest
}

func newPollGroup() (*pollGroup, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	epoll := os.NewFile(uintptr(fd), "epoll") // non-blocking, so Go's poller waits on it
	raw, err := epoll.SyscallConn()
	if err != nil {
		epoll.Close()
		return nil, err
	}
	g := &pollGroup{
		epoll:   epoll,
		epollFD: fd,
		raw:     raw,
		subs:    map[int32]*subscriber{},
		events:  make([]unix.EpollEvent, 256),
		oob:     newStampSpace(),
	}
	g.wait = g.epollWait
	return g, nil
}

// adopt moves s's socket into the group: a duplicate of its descriptor is
// registered with the group's epoll, and the original closed, which takes
// it out of Go's poller. It reports false, leaving s as it was, for a
// connection that is not plain TCP.
func (g *pollGroup) adopt(s *subscriber) bool {
	tcp, ok := s.conn.(*net.TCPConn)
	if !ok {
		return false
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return false
	}
	fd, dupErr := -1, error(nil)
	if err := raw.Control(func(orig uintptr) { fd, dupErr = unix.FcntlInt(orig, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || dupErr != nil {
		return false
	}
	// The duplicate shares the original's open file, so it is already
	// non-blocking, as Go keeps every socket.
	event := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if unix.EpollCtl(g.epollFD, unix.EPOLL_CTL_ADD, fd, &event) != nil {
		unix.Close(fd)
		return false
	}
	s.conn.Close()
	s.socket = &polledSocket{fd: fd, oob: g.oob}
	g.subs[int32(fd)] = s
	return true
}

// run reads the group's subscribers until each has every message or its
// connection ends, or stop. Frames that came with a handshake's reply are
// taken first; those sockets then wait for their first edge like the rest.
func (g *pollGroup) run() {
	defer g.epoll.Close()
	for fd, s := range g.subs {
		g.settle(fd, s, s.takeEarly())
	}
	for len(g.subs) > 0 {
		if err := g.raw.Read(g.wait); err != nil {
			return // stopped: the epoll instance was closed
		}
		if g.waitErr != nil {
			err := fmt.Errorf("reading stopped: epoll_wait: %w", g.waitErr)
			for fd, s := range g.subs {
				g.settle(fd, s, err)
			}
			return
		}
		for _, event := range g.events[:g.ready] {
			if s, ok := g.subs[event.Fd]; ok {
				g.read(event.Fd, s, event.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0)
			}
		}
	}
}

// read empties one ready socket. A short read means it is empty, unless
// the peer's end came too (ended): that is reported once, with the bytes
// before it, so read goes on until it finds it.
func (g *pollGroup) read(fd int32, s *subscriber, ended bool) {
	for {
		space := s.readSpace()
		n, arrived, err := s.socket.recv(space)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return
		case err == nil:
			err = s.received(n, arrived)
		}
		if !g.settle(fd, s, err) || (n < len(space) && !ended) {
			return
		}
	}
}

// settle records how a read went, and stops reading a subscriber once it
// has every message or its connection ended; it reports whether the socket
// is still being read. A subscriber with every message keeps its
// connection open, unread, until closeSockets, as it would with a
// goroutine of its own: the server sees no one leave until the run ends.
func (g *pollGroup) settle(fd int32, s *subscriber, err error) bool {
	if err == nil && s.distinct < s.want {
		return true
	}
	s.err = err
	delete(g.subs, fd)
	if err != nil {
		unix.Close(int(fd)) // its last descriptor: this also takes it out of the epoll
	} else {
		g.finished = append(g.finished, fd) // later edges find no subscriber, and are passed over
	}
	return false
}

// closeSockets closes every socket the group still holds, once run has
// returned.
func (g *pollGroup) closeSockets() {
	for fd := range g.subs {
		unix.Close(int(fd))
	}
	for _, fd := range g.finished {
		unix.Close(int(fd))
	}
	g.subs, g.finished = nil, nil
}

// epollWait asks epoll, without blocking, which sockets are ready, and
// leaves how many in ready (or its error in waitErr); false asks Go's
// poller to wait until some are.
func (g *pollGroup) epollWait(fd uintptr) bool {
	n, err := unix.EpollWait(int(fd), g.events, 0)
	if err == unix.EINTR {
		n, err = 0, nil
	} else if err == nil && n == 0 {
		return false
	}
	g.ready, g.waitErr = n, err
	return true
}

// stop ends run, leaving the subscribers still reading without an error:
// the load generator closed them itself.
func (g *pollGroup) stop() { g.epoll.Close() }
