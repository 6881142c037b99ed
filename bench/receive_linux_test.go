package bench

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// awaitKernelTimestamps holds a time-stamping socket open for the test and
// returns once a segment received on loopback carries a time, since the
// kernel turns time-stamping on asynchronously (stampArrivals). Each try is
// a real send and receive, so the loop waits on events, not on a clock.
func awaitKernelTimestamps(t *testing.T) {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	client, err := stampingDialer().Dial("tcp", listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := listener.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	receiver, ok := newSocket(client).(*stampedSocket)
	if !ok {
		t.Fatal("a loopback TCP connection got no time-stamping receiver")
	}
	buf := make([]byte, 1)
	for {
		if _, err := server.Write(buf); err != nil {
			t.Fatal(err)
		}
		_, arrived, err := receiver.recv(buf)
		if err != nil {
			t.Fatal(err)
		}
		if !arrived.IsZero() {
			return
		}
	}
}

// A subscriber that has every message stops being read but keeps its
// connection until the load generator stops, as one read by a goroutine of
// its own does: the server sees nobody leave before the run ends.
func TestAFinishedSubscriberKeepsItsConnectionUntilStop(t *testing.T) {
	message := encodePayload(0, time.Now(), 64)
	url, closed := quietServer(t, append([]byte{0x81, byte(len(message))}, message...))
	s := dialSubscriber(t, url, 1)
	r := startReading([]*subscriber{s})
	<-r.done
	if len(r.groups) != 1 || len(r.groups[0].finished) != 1 {
		t.Fatalf("the finished subscriber's socket is not held by its group: %d groups", len(r.groups))
	}
	if _, err := unix.FcntlInt(uintptr(r.groups[0].finished[0]), unix.F_GETFD, 0); err != nil {
		t.Errorf("the finished subscriber's socket was closed before the stop: %v", err)
	}
	r.stop()
	if err := <-closed; !errors.Is(err, io.EOF) {
		t.Errorf("the server read %v after the stop, want EOF", err)
	}
	if s.err != nil || s.distinct != 1 {
		t.Errorf("err %v, %d messages; want no error and 1", s.err, s.distinct)
	}
}

// A server that sends its last frame and closes at once can have both in
// the socket by the time the poll group hears of it, in one edge that does
// not come again: the group reads the frame and the end of the connection.
func TestAPollGroupReadsTheEndThatCameWithTheLastFrame(t *testing.T) {
	message := encodePayload(0, time.Now(), 64)
	send := make(chan struct{})
	url := fakeServer(t, nil, func(conn net.Conn, _ *bufio.Reader) {
		<-send // after the handshake's reply has been read, so the frame stays in the socket
		conn.Write(append([]byte{0x81, byte(len(message))}, message...))
	}) // then the server closes the connection
	s := dialSubscriber(t, url, 2)
	close(send)
	awaitHangUp(t, s.conn)
	r := startReading([]*subscriber{s})
	defer r.stop()
	select {
	case <-r.done:
	case <-time.After(time.Minute): // a guard; the wait ends on the event
		t.Fatal("the poll group still reads a connection that ended")
	}
	if !errors.Is(s.err, errClosed) || s.distinct != 1 {
		t.Errorf("reading ended with %v after %d messages, want the end after 1", s.err, s.distinct)
	}
}

// awaitHangUp returns once the peer's end of the connection has reached
// conn's socket, behind whatever it sent before.
func awaitHangUp(t *testing.T, conn net.Conn) {
	t.Helper()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var pollErr error
	err = raw.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		for {
			n, err := unix.Poll(fds, int(time.Minute/time.Millisecond))
			switch {
			case err == unix.EINTR:
				continue
			case err == nil && n == 0:
				err = errors.New("the server's end did not arrive")
			}
			pollErr = err
			return
		}
	})
	if err != nil || pollErr != nil {
		t.Fatal(err, pollErr)
	}
}
