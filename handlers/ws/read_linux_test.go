package ws

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// These tests follow the reading hand-off: a connection's reader is a
// goroutine that runs only while there is something to read, started by
// the readiness Poller, by the read deadline's alarm or by closing the
// socket. They run on Linux, where the Poller works; elsewhere every
// connection has a reader for its life.

// gatedSocket is the socket under a connection, with a gate that its
// readers pass on their way into Read. A test closes the gate to hold the
// reader that comes next in the middle of its pass, and the socket counts
// how many readers were ever inside Read at once.
type gatedSocket struct {
	net.Conn
	inside atomic.Int32
	most   atomic.Int32

	mu      sync.Mutex
	gate    chan struct{} // nil while open
	arrived chan struct{} // told when a reader stops at the closed gate
}

// gateReads puts a gate, open, under a connection before it starts.
func gateReads(c *Conn) { c.raw.Conn = &gatedSocket{Conn: c.raw.Conn} }

// gateOf is the gate that gateReads put under c.
func gateOf(t *testing.T, c *Conn) *gatedSocket {
	t.Helper()
	g, ok := c.raw.Conn.(*gatedSocket)
	if !ok {
		t.Fatal("the connection has no gate under it: serve with beforeStart: gateReads")
	}
	return g
}

func (g *gatedSocket) Read(p []byte) (int, error) {
	n := g.inside.Add(1)
	defer g.inside.Add(-1)
	for most := g.most.Load(); n > most && !g.most.CompareAndSwap(most, n); most = g.most.Load() {
	}
	g.mu.Lock()
	gate, arrived := g.gate, g.arrived
	g.mu.Unlock()
	if gate != nil {
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-gate
	}
	return g.Conn.Read(p)
}

// close closes the gate; the returned channel receives once a reader has
// stopped at it.
func (g *gatedSocket) close() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate, g.arrived = make(chan struct{}), make(chan struct{}, 1)
	return g.arrived
}

// open lets the readers at the gate, and every later one, through.
func (g *gatedSocket) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.gate)
	g.gate = nil
}

// readerGoroutines counts the goroutines in the process that are a
// connection's reader.
func readerGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "ws.(*Conn).readWhileInput(") || strings.Contains(g, "ws.(*Conn).discardFrames(") {
			count++
		}
	}
	return count
}

// An idle connection has no reader goroutine: one starts when something
// comes to read, and ends once it has read it.
func TestIdleConnectionsHaveNoReaderGoroutine(t *testing.T) {
	// Not parallel: it counts every reader in the process, so no other
	// test's connections may be read meanwhile.
	s := startWebSocketServerWith(t, quietConfig(), serveOptions{beforeStart: gateReads})
	const clients = 8
	var conns []net.Conn
	var frames []*bufio.Reader
	for i := range clients {
		conn, r := dialRaw(t, s, 0, 0)
		pingPong(t, conn, r, fmt.Sprint("hello from ", i))
		conns, frames = append(conns, conn), append(frames, r)
	}
	waitUntil(t, "every reader has ended once its ping is answered", func() bool { return readerGoroutines() == 0 })
	for i, conn := range conns {
		if s.connOf(t, conn.LocalAddr()).reading.Load() {
			t.Errorf("connection %d: no reader runs, yet its reading turn is held, so that no reader would start", i)
		}
	}

	// The count does see a reader while one runs: one held in its pass.
	g := gateOf(t, s.connOf(t, conns[0].LocalAddr()))
	arrived := g.close()
	if _, err := conns[0].Write(maskedFrame(opPing, []byte("held"))); err != nil {
		t.Fatal(err)
	}
	await(t, arrived, "a reader for the ping")
	if n := readerGoroutines(); n != 1 {
		t.Errorf("%d reader goroutines while one reader is held in its pass, want 1", n)
	}
	g.open()
	expectPong(t, frames[0], "held")

	// Each idle connection still has its pings answered: a reader starts
	// for each, and ends again.
	for i, conn := range conns {
		pingPong(t, conn, frames[i], fmt.Sprint("again to ", i))
	}
	waitUntil(t, "every reader has ended again", func() bool { return readerGoroutines() == 0 })
}

// Bytes that come while a reader is in the middle of its pass, in pieces
// and with more requests to read, are read by that reader, in order: no
// second reader starts meanwhile.
func TestBytesThatComeDuringAPassAreReadByThatReaderInOrder(t *testing.T) {
	t.Parallel()
	s := startWebSocketServerWith(t, quietConfig(), serveOptions{beforeStart: gateReads})
	conn, frames := dialRaw(t, s, 0, 0)
	pingPong(t, conn, frames, "before")
	c := s.connOf(t, conn.LocalAddr())
	g := gateOf(t, c)

	var stream []byte
	const pings = 16
	for i := range pings {
		stream = append(stream, maskedFrame(opPing, fmt.Appendf(nil, "ping %d", i))...)
	}
	// The first byte starts a reader, which is held on its way into Read,
	// in the middle of its pass, holding the connection's reading turn.
	arrived := g.close()
	if _, err := conn.Write(stream[:1]); err != nil {
		t.Fatal(err)
	}
	await(t, arrived, "a reader for the first byte")
	// The rest comes a few bytes at a time, each piece an edge of its own.
	for off := 1; off < len(stream); off += 3 {
		if _, err := conn.Write(stream[off:min(off+3, len(stream))]); err != nil {
			t.Fatal(err)
		}
	}
	// More requests to read come from elsewhere (the alarm, a close), each
	// followed by a turn for any reader it might have started, which would
	// find the bytes waiting and come to the gate.
	requests := make(chan struct{})
	go func() {
		defer close(requests)
		for range 8 {
			c.Ready()
			runtime.Gosched()
		}
	}()
	await(t, requests, "the requests to read")
	g.open()
	for i := range pings {
		expectPong(t, frames, fmt.Sprintf("ping %d", i))
	}
	if most := g.most.Load(); most != 1 {
		t.Errorf("%d readers were inside Read at once, want 1", most)
	}
}

// A request to read that comes while a reader is in its pass, and finds
// the reading turn taken, is not lost: the reader looks for one once it
// lets go. Here the request is the Poller saying it has stopped, after
// which nothing else would ever start a reader.
func TestARequestToReadDuringAPassIsNotLost(t *testing.T) {
	t.Parallel()
	s := startWebSocketServerWith(t, quietConfig(), serveOptions{beforeStart: gateReads})
	conn, frames := dialRaw(t, s, 0, 0)
	pingPong(t, conn, frames, "before")
	g := gateOf(t, s.connOf(t, conn.LocalAddr()))

	arrived := g.close()
	if _, err := conn.Write(maskedFrame(opPing, []byte("during the pass"))); err != nil {
		t.Fatal(err)
	}
	await(t, arrived, "a reader for the ping")
	// Close tells every watcher, here, that it must be read some other way
	// from now on, and returns once the Poller's goroutine has ended.
	s.engine.poller.Close()
	g.open()
	expectPong(t, frames, "during the pass")
	for _, text := range []string{"after the Poller", "and again"} {
		pingPong(t, conn, frames, text)
	}
}

// Pings sent in pieces, each answered before the next is sent, on several
// connections at once, while more requests to read keep coming: every
// ping is answered, in order, by one reader at a time. The race detector
// watches the readers' shared state meanwhile.
func TestPingsSentInPiecesAreAllAnsweredInOrder(t *testing.T) {
	t.Parallel()
	s := startWebSocketServerWith(t, quietConfig(), serveOptions{beforeStart: gateReads})
	const clients, rounds = 4, 300
	var wg sync.WaitGroup
	var gates []*gatedSocket
	for i := range clients {
		conn, frames := dialRaw(t, s, 0, 0)
		pingPong(t, conn, frames, "before")
		c := s.connOf(t, conn.LocalAddr())
		gates = append(gates, gateOf(t, c))
		wg.Go(func() {
			for round := range rounds {
				text := fmt.Sprintf("client %d, ping %d", i, round)
				frame := maskedFrame(opPing, []byte(text))
				// Cut where the reader must wait inside the frame, and at
				// a frame's end, with another request after each piece.
				for _, piece := range [][]byte{frame[:1], frame[1:2], frame[2:6], frame[6:9], frame[9:]} {
					if _, err := conn.Write(piece); err != nil {
						t.Errorf("%s: %v", text, err)
						return
					}
					c.Ready()
				}
				f, err := readServerFrame(frames)
				if err != nil {
					t.Errorf("%s was never answered: %v", text, err)
					return
				}
				if f.opcode != 0xA || string(f.payload) != text {
					t.Errorf("%s: got opcode %x carrying %q, want its pong", text, f.opcode, f.payload)
					return
				}
			}
		})
	}
	wg.Wait()
	for i, g := range gates {
		if most := g.most.Load(); most != 1 {
			t.Errorf("client %d: %d readers were inside Read at once, want 1", i, most)
		}
	}
}

// A silent client gets no reader of its own: the read deadline's alarm
// starts one when it passes, which finds the idle timeout and closes the
// connection.
func TestTheIdleTimeoutAlarmClosesASilentConnection(t *testing.T) {
	t.Parallel()
	cfg := quietConfig()
	cfg.IdleTimeout = 100 * time.Millisecond // how long the test waits: nothing measures it
	s := startWebSocketServer(t, cfg, 0)
	conn, frames := dialRaw(t, s, 0, 0)
	ended := s.endedOf(t, conn.LocalAddr())

	if f, err := readServerFrame(frames); !errors.Is(err, io.EOF) {
		t.Fatalf("the silent client read %+v, %v; want the server to close the connection", f, err)
	}
	await(t, ended, "the connection to finish")
	if !strings.Contains(s.logs.String(), "peer silent past the idle timeout") {
		t.Errorf("the server did not say why it closed the connection:\n%s", s.logs)
	}
}

// A connection whose socket is closed by its writer (here, for a client
// that stopped reading) gets a reader, though the client sends nothing:
// the reader finds the socket closed and finishes the connection, which
// releases its subscription.
func TestClosingTheSocketFinishesAnIdleConnection(t *testing.T) {
	t.Parallel()
	cfg := quietConfig()
	cfg.WriteTimeout = 100 * time.Millisecond // how long the test waits: nothing measures it
	s := startWebSocketServerWith(t, cfg, serveOptions{socketBytes: 16 << 10})
	conn, _ := dialRaw(t, s, 4<<10, 4<<10) // it never reads, nor sends anything more
	ended := s.endedOf(t, conn.LocalAddr())

	text := strings.Repeat("x", 16<<10)
	for range 32 { // far more than both sockets hold
		if _, _, err := s.hub.Publish("default", text); err != nil {
			t.Fatal(err)
		}
	}
	await(t, ended, "the connection to finish once its write has timed out")
	stats := s.hub.Stats()
	if stats.SlowDisconnects != 1 || stats.Subscribers != 0 {
		t.Errorf("%d slow disconnects and %d subscribers left, want 1 and 0", stats.SlowDisconnects, stats.Subscribers)
	}
}
