package bench

import (
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
	r := startReading([]*subscriber{s}, 1)
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
