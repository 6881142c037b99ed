package readiness

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Poller tells when watched sockets have something to read. Its zero
// value is ready to use: it starts its goroutine with the first watch and
// stops it when the last is forgotten. If waiting fails, it stops for
// good: every watcher is told, and later watches fail.
type Poller struct {
	mu      sync.Mutex
	watches map[uint64]Watcher
	epoll   *os.File // nil while nothing is watched
	epollFD int
	failed  error // why waiting failed; nil while it works
}

// eventsPerWait is how many ready sockets one epoll_wait returns at most;
// more wait for the next.
const eventsPerWait = 128

// Watch tells w each time conn's socket gets something to read, until
// Forget(key). key names the watch and must not be in use by another one.
// If bytes are waiting already, w is told at once. Once the Poller has
// failed, Watch returns the error it failed with.
func (p *Poller) Watch(key uint64, conn syscall.RawConn, w Watcher) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed != nil {
		return p.failed
	}
	if _, taken := p.watches[key]; taken {
		return fmt.Errorf("readiness: watch %d is already in use", key)
	}
	if p.epoll == nil {
		if err := p.open(); err != nil {
			return err
		}
	}
	event := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET}
	setEventKey(&event, key)
	var ctlErr error
	if err := conn.Control(func(fd uintptr) {
		ctlErr = unix.EpollCtl(p.epollFD, unix.EPOLL_CTL_ADD, int(fd), &event)
	}); err != nil {
		ctlErr = err
	}
	if ctlErr != nil {
		p.closeIfUnused()
		return fmt.Errorf("readiness: watch: %w", ctlErr)
	}
	p.watches[key] = w
	return nil
}

// Forget stops telling the watcher of key. The socket leaves the epoll
// instance when it is closed; an edge that comes before finds no one to
// tell.
func (p *Poller) Forget(key uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.watches, key)
	p.closeIfUnused()
}

// open starts an epoll instance and the goroutine that waits on it.
func (p *Poller) open() error {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("readiness: epoll_create1: %w", err)
	}
	// Non-blocking, so that os.NewFile hands it to Go's poller, which then
	// parks the waiting goroutine instead of a thread.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return fmt.Errorf("readiness: epoll: %w", err)
	}
	epoll := os.NewFile(uintptr(fd), "epoll")
	raw, err := epoll.SyscallConn()
	if err != nil {
		epoll.Close()
		return fmt.Errorf("readiness: epoll: %w", err)
	}
	if p.watches == nil {
		p.watches = map[uint64]Watcher{}
	}
	p.epoll, p.epollFD = epoll, fd
	go p.run(raw, fd)
	return nil
}

// closeIfUnused closes the epoll instance once nothing is watched, which
// ends run. p.mu is held.
func (p *Poller) closeIfUnused() {
	if len(p.watches) > 0 || p.epoll == nil {
		return
	}
	p.epoll.Close()
	p.epoll = nil
}

// run waits for edges and tells the watchers, until the epoll instance is
// closed or waiting fails.
func (p *Poller) run(raw syscall.RawConn, fd int) {
	events := make([]unix.EpollEvent, eventsPerWait)
	var ready int
	var waitErr error
	wait := func(uintptr) bool {
		ready, waitErr = unix.EpollWait(fd, events, 0)
		if errors.Is(waitErr, unix.EINTR) {
			ready, waitErr = 0, nil
			return true // ask again
		}
		return ready > 0 || waitErr != nil // false: Go's poller waits for some
	}
	for {
		if err := raw.Read(wait); err != nil {
			return // closed by closeIfUnused
		}
		if waitErr != nil {
			p.fail(fmt.Errorf("readiness: epoll_wait: %w", waitErr))
			return
		}
		for _, event := range events[:ready] {
			p.mu.Lock()
			w := p.watches[eventKey(&event)]
			p.mu.Unlock()
			if w != nil {
				w.Ready()
			}
		}
	}
}

// fail stops the Poller for good, after waiting failed: later watches
// fail, and every watcher is told to read its socket some other way. The
// epoll instance is closed, as ever, once the last watch is forgotten.
func (p *Poller) fail(err error) {
	p.mu.Lock()
	p.failed = err
	all := make([]Watcher, 0, len(p.watches))
	for _, w := range p.watches {
		all = append(all, w)
	}
	p.mu.Unlock()
	for _, w := range all {
		w.PollerFailed(err)
	}
}

// setEventKey and eventKey keep a watch's key in the event's 64 bits of
// user data, which x/sys/unix splits into Fd and Pad.
func setEventKey(event *unix.EpollEvent, key uint64) {
	event.Fd, event.Pad = int32(uint32(key)), int32(uint32(key>>32))
}

func eventKey(event *unix.EpollEvent) uint64 {
	return uint64(uint32(event.Fd)) | uint64(uint32(event.Pad))<<32
}
