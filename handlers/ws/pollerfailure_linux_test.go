package ws

import (
	"bufio"
	"net"
	"testing"
	"time"

	"herald/handlers/readiness/readinesstest"
)

func TestConnectionsAreStillReadAfterTheReadinessPollerFails(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.PingInterval, cfg.IdleTimeout = time.Hour, time.Hour // no pings of the server's own among the pongs, and no idle timeout
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
