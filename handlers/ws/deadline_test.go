package ws

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

func TestInterruptCutsABlockedWriteAndEveryLaterOne(t *testing.T) {
	t.Parallel()
	local, peer := net.Pipe() // writes block until the peer reads, which it never does
	defer local.Close()
	defer peer.Close()
	conn := &deadlineConn{Conn: local, idleTimeout: time.Hour, writeTimeout: time.Hour}

	written := make(chan error, 1)
	go func() {
		_, err := conn.Write([]byte("never read"))
		written <- err
	}()
	conn.interrupt()
	// Whether the interrupt came before or during the write, the write ends
	// now and not in an hour.
	if err := <-written; !errors.Is(err, errInterrupted) && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked write returned %v, want it interrupted", err)
	}
	if _, err := conn.Write([]byte("later")); !errors.Is(err, errInterrupted) {
		t.Errorf("write after interrupt returned %v, want errInterrupted", err)
	}
}
