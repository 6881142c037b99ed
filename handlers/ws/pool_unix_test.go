//go:build unix

package ws

import (
	"bufio"
	"fmt"
	"strings"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

// These tests follow the writing side: the writer pool's shards, which
// write to every connection without blocking, and the ownership of a
// connection's writing side (own, release, writeOwned, finishWrite,
// writeBlocking).

// Many publishes, in bursts, to many connections: each gets every message
// once and in order, with io_uring and without.
func TestThePoolWritesEveryMessageOnceAndInOrderToManyConnections(t *testing.T) {
	t.Parallel()
	for _, ring := range []bool{false, true} {
		t.Run(fmt.Sprint("io_uring=", ring), func(t *testing.T) {
			t.Parallel()
			cfg := quietConfig()
			cfg.IOURing = ring
			s := startWebSocketServer(t, cfg, 0)
			if ring && !s.engine.pool.useRing {
				t.Skip("this kernel does not allow io_uring: the writers write to each connection on their own, as without it")
			}
			const clients, bursts, perBurst = 16, 40, 25
			var conns []*gorilla.Conn
			for range clients {
				conn, _, err := gorilla.DefaultDialer.Dial(s.url(""), nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close() })
				conn.SetReadDeadline(time.Now().Add(hangGuard))
				conns = append(conns, conn)
			}
			read := func(i int, want string) {
				t.Helper()
				_, got, err := conns[i].ReadMessage()
				if err != nil {
					t.Fatalf("client %d, waiting for %q: %v", i, want, err)
				}
				if string(got) != want {
					t.Fatalf("client %d: got %q, want %q", i, got, want)
				}
			}
			// Each burst ends with the publisher waiting until everyone has
			// it, which is when a wake lost at the end of a write would
			// leave a message unwritten.
			for burst := range bursts {
				for m := range perBurst {
					if _, _, err := s.hub.Publish("default", fmt.Sprintf("burst %d, message %d", burst, m)); err != nil {
						t.Fatal(err)
					}
				}
				for i := range conns {
					for m := range perBurst {
						read(i, fmt.Sprintf("burst %d, message %d", burst, m))
					}
				}
			}
			// No message came twice: the next one is the next published.
			if _, _, err := s.hub.Publish("default", "last"); err != nil {
				t.Fatal(err)
			}
			for i := range conns {
				read(i, "last")
			}
			if sends, messages := s.engine.RingSends(), uint64(clients*(bursts*perBurst+1)); ring && (sends == 0 || sends > messages) {
				t.Errorf("io_uring carried %d sends for %d messages, want at least one and at most one a message", sends, messages)
			}
		})
	}
}

// A connection whose socket is full is left to a goroutine of its own,
// which writes the rest as the client reads: the shard goes on writing to
// its other connections meanwhile, and the slow client, once it reads,
// gets everything once and in order.
func TestAFullSocketIsWrittenByItsOwnGoroutineWhileTheShardGoesOn(t *testing.T) {
	t.Parallel()
	cfg := quietConfig()
	cfg.WriteTimeout = time.Hour // the slow client is never given up on here
	s := startWebSocketServerWith(t, cfg, serveOptions{socketBytes: 16 << 10})

	// Shards are given in turn, so the slow client and the one dialled a
	// round later share one.
	slow, slowFrames := dialRawQuery(t, s, "?topic=slow", 4<<10, 4<<10)
	pingPong(t, slow, slowFrames, "started")
	for range len(s.engine.pool.shards) - 1 {
		other, frames := dialRawQuery(t, s, "?topic=other", 0, 0)
		pingPong(t, other, frames, "started")
	}
	fast, fastFrames := dialRawQuery(t, s, "?topic=fast", 0, 0)
	pingPong(t, fast, fastFrames, "started")
	slowConn := s.connOf(t, slow.LocalAddr())
	if slowConn.shard != s.connOf(t, fast.LocalAddr()).shard {
		t.Fatal("the slow and the fast client are on different shards")
	}

	// Far more than both sockets to the slow client hold.
	var slowTexts []string
	for i := range 64 {
		text := fmt.Sprintf("slow %02d ", i) + strings.Repeat("s", 16<<10)
		if _, _, err := s.hub.Publish("slow", text); err != nil {
			t.Fatal(err)
		}
		slowTexts = append(slowTexts, text)
	}
	for i := range 20 {
		text := fmt.Sprint("fast ", i)
		if _, _, err := s.hub.Publish("fast", text); err != nil {
			t.Fatal(err)
		}
		expectTexts(t, fastFrames, text)
	}
	slowConn.mu.Lock()
	waiting := slowConn.writing
	slowConn.mu.Unlock()
	if !waiting {
		t.Fatal("nothing holds the slow client's writing side, though most of what it is owed is unwritten")
	}

	expectTexts(t, slowFrames, slowTexts...)
	// The goroutine that finished the write let go: the shard writes to
	// the slow client again.
	if _, _, err := s.hub.Publish("slow", "after the drain"); err != nil {
		t.Fatal(err)
	}
	expectTexts(t, slowFrames, "after the drain")
}

// A writer that holds a connection's writing side when a message is
// published, so that the shard finds the side taken and leaves the
// message, does not let go before it has written it.
func TestAWriterDoesNotLetGoWhileAMessageWaits(t *testing.T) {
	t.Parallel()
	s := startWebSocketServer(t, quietConfig(), 0)
	conn, frames := dialRaw(t, s, 0, 0)
	pingPong(t, conn, frames, "started")
	c := s.connOf(t, conn.LocalAddr())

	// The test is the writer: the shard may still be writing to the new
	// connection, and lets go once it has nothing to write.
	waitUntil(t, "the writing side is free to take", c.own)
	if _, _, err := s.hub.Publish("default", "during the write"); err != nil {
		t.Fatal(err)
	}
	if c.release() {
		t.Fatal("the writer let go with a message waiting, which the shard found the side taken for and left")
	}
	c.writeOwned(newBatchWriter())
	if _, _, err := s.hub.Publish("default", "after the write"); err != nil {
		t.Fatal(err)
	}
	expectTexts(t, frames, "during the write", "after the write")
}

// The ping timer reaches every connection, idle ones included.
func TestPingsReachEveryConnection(t *testing.T) {
	t.Parallel()
	cfg := quietConfig()
	cfg.PingInterval = 10 * time.Millisecond // how soon the test ends: nothing measures it
	s := startWebSocketServer(t, cfg, 0)
	var clients []*bufio.Reader
	for range 8 {
		_, frames := dialRaw(t, s, 0, 0)
		clients = append(clients, frames)
	}
	for i, frames := range clients {
		f, err := readServerFrame(frames)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if f.opcode != opPing {
			t.Fatalf("client %d: got opcode %x carrying %q, want a ping", i, f.opcode, f.payload)
		}
	}
}

// Close ends every goroutine of the engine: the pool's shards and ping
// timer, with io_uring or not, once the connections have finished.
func TestCloseEndsEveryGoroutineOfTheEngine(t *testing.T) {
	// Not parallel: it looks at every goroutine in the process.
	before := goleak.IgnoreCurrent()
	for _, ring := range []bool{false, true} {
		t.Run(fmt.Sprint("io_uring=", ring), func(t *testing.T) {
			cfg := quietConfig()
			cfg.IOURing = ring
			cfg.PingInterval = time.Millisecond // the timer runs, and pings
			s := startWebSocketServer(t, cfg, 0)
			var clients []*bufio.Reader
			for range 4 {
				_, frames := dialRaw(t, s, 0, 0)
				clients = append(clients, frames)
			}
			if _, _, err := s.hub.Publish("default", "to everyone"); err != nil {
				t.Fatal(err)
			}
			for _, frames := range clients {
				expectTexts(t, frames, "to everyone")
			}
		}) // the clients have closed, then the server's cleanup closed the engine
		goleak.VerifyNone(t, before)
	}
}
