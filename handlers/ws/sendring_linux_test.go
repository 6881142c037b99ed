package ws

import (
	"bytes"
	"errors"
	"os"
	"syscall"
	"testing"
)

// socketPair returns both ends of a connected, non-blocking stream socket
// pair, closed when the test ends.
func socketPair(t *testing.T) (local, peer int) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fds[0]); syscall.Close(fds[1]) })
	return fds[0], fds[1]
}

func TestSendRingSendsEachBufferAndReportsFullAndBrokenSockets(t *testing.T) {
	ring, err := openSendRing(ringRound)
	if err != nil {
		// Not a tool to install but the kernel's choice; Herald then
		// writes the other way, which the tests with io_uring off cover.
		t.Skipf("this kernel does not allow io_uring: %v", err)
	}
	defer ring.close()

	healthy, healthyPeer := socketPair(t)
	broken, brokenPeer := socketPair(t)
	syscall.Close(brokenPeer) // sending to it now fails with EPIPE
	full, _ := socketPair(t)
	filler := bytes.Repeat([]byte("f"), 64<<10)
	for {
		if _, err := syscall.Write(full, filler); errors.Is(err, syscall.EAGAIN) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}

	fds := []int{healthy, broken, full}
	bufs := [][]byte{[]byte("to the healthy one"), []byte("to the broken one"), []byte("to the full one")}
	res := make([]int32, len(fds))
	for round := range 2 { // the ring is reused, as a writer's is
		if err := ring.sendAll(fds, bufs, res); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if n, err := sentBytes(res[0]); n != len(bufs[0]) || err != nil {
			t.Errorf("round %d, healthy socket: %d bytes, %v; want all %d", round, n, err, len(bufs[0]))
		}
		if _, err := sentBytes(res[1]); !errors.Is(err, syscall.EPIPE) {
			t.Errorf("round %d, socket whose peer closed: %v, want EPIPE", round, err)
		}
		if n, err := sentBytes(res[2]); n != 0 || err != nil {
			t.Errorf("round %d, full socket: %d bytes, %v; want none and no error, so that the blocking path takes it", round, n, err)
		}
		got := make([]byte, 100)
		n, err := syscall.Read(healthyPeer, got)
		if err != nil || string(got[:n]) != string(bufs[0]) {
			t.Fatalf("round %d: the healthy peer read %q, %v", round, got[:n], err)
		}
	}
}

// A ring whose submission fails closes, leaves every send to the blocking
// path, and refuses later rounds, so that no stale entry is ever picked up.
func TestSendRingThatFailsClosesAndLeavesEverySendUndone(t *testing.T) {
	ring, err := openSendRing(ringRound)
	if err != nil {
		t.Skipf("this kernel does not allow io_uring: %v", err)
	}
	defer ring.close()
	// The ring's descriptor now names /dev/null, so io_uring_enter fails.
	null, err := syscall.Open(os.DevNull, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(null)
	if err := syscall.Dup2(null, ring.ring.FD()); err != nil {
		t.Fatal(err)
	}

	local, _ := socketPair(t)
	res := []int32{0}
	if err := ring.sendAll([]int{local}, [][]byte{[]byte("never sent")}, res); err == nil {
		t.Fatal("sendAll on a broken ring reported no error")
	}
	if n, err := sentBytes(res[0]); n != 0 || err != nil {
		t.Errorf("the send it did not carry out: %d bytes, %v; want none and no error, for the blocking path", n, err)
	}
	if !ring.broken || !ring.ring.Closed() {
		t.Errorf("broken %v, closed %v: want the ring marked broken and closed", ring.broken, ring.ring.Closed())
	}
	if err := ring.sendAll([]int{local}, [][]byte{[]byte("again")}, res); !errors.Is(err, errRingBroken) {
		t.Errorf("a later round: %v, want errRingBroken", err)
	}
}
