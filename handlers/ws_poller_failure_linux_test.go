package handlers

import (
	"bufio"
	"net"
	"testing"
	"time"

	"herald/app"
	"herald/handlers/readiness/readinesstest"
)

// pingPong sends a ping carrying text and fails the test unless the next
// frame is its pong.
func pingPong(t *testing.T, conn net.Conn, frames *bufio.Reader, text string) {
	t.Helper()
	if _, err := conn.Write(maskedFrame(opPing, []byte(text))); err != nil {
		t.Fatal(err)
	}
	f, err := readServerFrame(frames)
	if err != nil {
		t.Fatalf("ping %q was never answered: %v", text, err)
	}
	if f.opcode != 0xA || string(f.payload) != text {
		t.Fatalf("ping %q: got opcode %x carrying %q, want its pong", text, f.opcode, f.payload)
	}
}

func TestConnectionsAreStillReadAfterTheReadinessPollerFails(t *testing.T) {
	t.Parallel()
	cfg := app.DefaultConfig()
	cfg.WebSocket.PingInterval = time.Hour // no pings of the server's own among the pongs, and no idle timeout
	s := startWebSocketServer(t, cfg, 0)
	var conns []net.Conn
	var frames []*bufio.Reader
	for range 2 {
		conn, r := dialRaw(t, s, 0, 0)
		pingPong(t, conn, r, "before") // read on the Poller's word
		conns, frames = append(conns, conn), append(frames, r)
	}
	watched := s.connOf(t, conns[0].LocalAddr())
	if !watched.onDemand {
		t.Fatal("the connection is not read on demand: there is no Poller to fail")
	}
	// The Poller's epoll_wait fails once it wakes, while its descriptor
	// is still open for watching: a real fault, provoked.
	readinesstest.BreakEpoll(t, readinesstest.EpollWatching(t, watched.fdNum, watched.sub.ID()))

	// The first ping wakes the Poller, whose epoll_wait fails. Both
	// connections must be read from then on, however often they speak.
	for i, conn := range conns {
		for _, text := range []string{"after", "and again", "and once more"} {
			pingPong(t, conn, frames[i], text)
		}
	}
	// A connection made after the failure is read too.
	late, r := dialRaw(t, s, 0, 0)
	pingPong(t, late, r, "late")
	pingPong(t, late, r, "late, again")
}
