package bench

import (
	"net"
	"testing"
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
