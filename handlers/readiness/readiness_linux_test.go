package readiness

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"herald/handlers/readiness/readinesstest"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialed := make(chan net.Conn, 1)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Error(err)
		}
		dialed <- c
	}()
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := <-dialed
	if c == nil {
		t.FailNow()
	}
	t.Cleanup(func() { accepted.Close(); c.Close() })
	return accepted.(*net.TCPConn), c.(*net.TCPConn)
}

func rawConn(t *testing.T, c *net.TCPConn) syscall.RawConn {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// await fails the test unless ready is told within a minute, a guard
// against hanging rather than a measure of anything.
func await(t *testing.T, ready <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ready:
	case <-time.After(time.Minute):
		t.Fatalf("never told: %s", what)
	}
}

// testWatcher keeps what a Poller tells it.
type testWatcher struct {
	ready  chan struct{}
	failed chan error
}

func newWatcher() *testWatcher {
	return &testWatcher{ready: make(chan struct{}, 16), failed: make(chan error, 1)}
}

func (w *testWatcher) Ready()                 { w.ready <- struct{}{} }
func (w *testWatcher) PollerFailed(err error) { w.failed <- err }

func TestReadyIsCalledForEachArrivalAndForThePeersClose(t *testing.T) {
	server, client := tcpPair(t)
	var p Poller
	w := newWatcher()
	if err := p.Watch(1, rawConn(t, server), w); err != nil {
		t.Fatal(err)
	}
	defer p.Forget(1)

	buf := make([]byte, 16)
	for _, msg := range []string{"one", "two"} {
		if _, err := client.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		await(t, w.ready, "bytes arrived: "+msg)
		if n, err := server.Read(buf); err != nil || string(buf[:n]) != msg {
			t.Fatalf("read %q, %v; want %q", buf[:n], err, msg)
		}
	}
	client.Close()
	await(t, w.ready, "the peer closed")
	if n, err := server.Read(buf); n != 0 || err == nil {
		t.Fatalf("after the peer's close: read %d, %v", n, err)
	}
}

func TestBytesWaitingBeforeTheWatchAreToldAtOnce(t *testing.T) {
	server, client := tcpPair(t)
	if _, err := client.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	waitReadable(t, server) // the bytes are in the server's socket

	var p Poller
	w := newWatcher()
	if err := p.Watch(7, rawConn(t, server), w); err != nil {
		t.Fatal(err)
	}
	defer p.Forget(7)
	await(t, w.ready, "bytes waiting before the watch")
}

func TestAForgottenWatchIsNotCalledAndTheLastStopsThePoller(t *testing.T) {
	quiet, quietPeer := tcpPair(t)
	told, toldPeer := tcpPair(t)
	var p Poller
	forgotten := newWatcher()
	if err := p.Watch(1, rawConn(t, quiet), forgotten); err != nil {
		t.Fatal(err)
	}
	w := newWatcher()
	if err := p.Watch(2, rawConn(t, told), w); err != nil {
		t.Fatal(err)
	}
	p.Forget(1)
	// Both sockets get bytes; the edges come in order on one goroutine,
	// so once the second is told, the first's edge has been passed over.
	if _, err := quietPeer.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	waitReadable(t, quiet)
	if _, err := toldPeer.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	await(t, w.ready, "the watched socket")
	select {
	case <-forgotten.ready:
		t.Fatal("a forgotten watch was called")
	default:
	}

	p.Forget(2)
	p.mu.Lock()
	stopped := p.epoll == nil && len(p.watches) == 0
	p.mu.Unlock()
	if !stopped {
		t.Fatal("the poller kept its epoll instance with nothing watched")
	}
	// Watching again starts a new one.
	if err := p.Watch(2, rawConn(t, told), w); err != nil {
		t.Fatal(err)
	}
	defer p.Forget(2)
	if _, err := toldPeer.Write([]byte("z")); err != nil {
		t.Fatal(err)
	}
	await(t, w.ready, "the socket watched again")
}

func TestAKeyInUseIsRefused(t *testing.T) {
	a, _ := tcpPair(t)
	b, _ := tcpPair(t)
	var p Poller
	if err := p.Watch(3, rawConn(t, a), newWatcher()); err != nil {
		t.Fatal(err)
	}
	defer p.Forget(3)
	if err := p.Watch(3, rawConn(t, b), newWatcher()); err == nil {
		t.Fatal("a second watch with a key in use was taken")
	}
}

func TestAClosedConnectionCannotBeWatched(t *testing.T) {
	a, _ := tcpPair(t)
	raw := rawConn(t, a)
	a.Close()
	var p Poller
	if err := p.Watch(4, raw, newWatcher()); err == nil {
		p.Forget(4)
		t.Fatal("a closed connection was watched")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.epoll != nil {
		t.Fatal("a failed first watch left an epoll instance open")
	}
}

// waitReadable returns once c has bytes to read, without taking them.
func waitReadable(t *testing.T, c *net.TCPConn) {
	t.Helper()
	peek := make([]byte, 1)
	if err := rawConn(t, c).Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), peek, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err == nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestAfterEpollFailsNoWatchIsTakenAndEveryWatcherIsTold(t *testing.T) {
	var p Poller
	var watchers []*testWatcher
	var peers []*net.TCPConn
	for key := range uint64(3) {
		server, client := tcpPair(t)
		w := newWatcher()
		if err := p.Watch(key, rawConn(t, server), w); err != nil {
			t.Fatal(err)
		}
		defer p.Forget(key) // the Poller keeps its descriptor until the last
		watchers, peers = append(watchers, w), append(peers, client)
	}
	p.mu.Lock()
	epollFD := p.epollFD
	p.mu.Unlock()
	repair := readinesstest.BreakEpoll(t, epollFD)
	if _, err := peers[0].Write([]byte("x")); err != nil { // wakes the Poller, to fail
		t.Fatal(err)
	}
	for key, w := range watchers {
		select {
		case err := <-w.failed:
			if !errors.Is(err, unix.EINVAL) {
				t.Errorf("watcher %d was told %v, want epoll_wait's EINVAL", key, err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("watcher %d was never told that the Poller failed: its socket would never be read again", key)
		}
	}
	repair()

	other, _ := tcpPair(t)
	if err := p.Watch(9, rawConn(t, other), newWatcher()); err == nil {
		p.Forget(9)
		t.Fatal("a new watch was taken by a Poller whose epoll_wait has failed: its socket would never be read")
	}
}
