//go:build unix

package upgrade

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// setBuffer sets one of a socket's buffers (SO_SNDBUF or SO_RCVBUF).
func setBuffer(t *testing.T, conn syscall.Conn, option, size int) {
	t.Helper()
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, option, size) }); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
}

type writeResult struct {
	n   int
	err error
}

func TestStopWaitingEndsWritesToAFullSocketAndLosesNothingThatFit(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client := dial(t, ln.Addr().String())
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	// A fixed send buffer: the kernel holds at most a few MiB of what is
	// written, whatever its autotuning would make of it.
	setBuffer(t, accepted.(*net.TCPConn), syscall.SO_SNDBUF, 1<<20)
	conn := newReplayConn(accepted, nil)

	// Each write is more than both ends can hold while the client does not
	// read, so it can only end once it is told to stop waiting.
	pattern := func(seed byte) []byte {
		b := make([]byte, 8<<20)
		for i := range b {
			b[i] = seed + byte(i%251)
		}
		return b
	}
	first, second := pattern(0), pattern(7)
	written := make(chan writeResult, 1)
	go func() {
		n, err := conn.Write(first)
		written <- writeResult{n, err}
	}()
	conn.StopWaiting()
	// Whether StopWaiting came before the write filled the socket or while
	// it waited, the write ends now, with what fitted written.
	var r1 writeResult
	select {
	case r1 = <-written:
	case <-time.After(time.Minute):
		t.Fatal("a write to a full socket went on waiting after StopWaiting")
	}
	if !errors.Is(r1.err, errSocketFull) || r1.n >= len(first) {
		t.Fatalf("the first write returned %d bytes and %v, want part of it and errSocketFull", r1.n, r1.err)
	}
	n2, err := conn.Write(second)
	if !errors.Is(err, errSocketFull) || n2 >= len(second) {
		t.Fatalf("a write after StopWaiting returned %d bytes and %v, want what fitted and errSocketFull", n2, err)
	}

	// What fitted arrives, once each, in order; then there is room, and a
	// write goes through as before.
	got := make([]byte, r1.n+n2)
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatal(err)
	}
	if want := append(first[:r1.n:r1.n], second[:n2]...); !bytes.Equal(got, want) {
		t.Fatal("the client did not get exactly what the writes reported written")
	}
	if n, err := conn.Write([]byte("after")); n != 5 || err != nil {
		t.Fatalf("a write with room returned %d, %v", n, err)
	}
	after := make([]byte, 5)
	if _, err := io.ReadFull(client, after); err != nil || string(after) != "after" {
		t.Fatalf("read %q, %v", after, err)
	}
}
