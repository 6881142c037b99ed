package ws

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"herald/app"
)

// These tests follow the ring writer: a shard that sends a round of
// connections' batches with one io_uring submission. The test plays the
// shard, with a ring of its own, on a server whose pool has no writing
// goroutine; or runs the shard's goroutine itself, with that ring.

// startRingServer starts a shardless server and opens a ring for the test
// to play its shard with. It skips the test where the kernel refuses
// io_uring: Herald then writes to each connection on its own, which the
// tests without a ring cover.
func startRingServer(t *testing.T) (*wsTestServer, *ringWriter) {
	t.Helper()
	s := startWebSocketServerWith(t, quietConfig(), serveOptions{shardless: true})
	rw, err := newRingWriter(&s.engine.pool.ringSends)
	if err != nil {
		t.Skipf("this kernel does not allow io_uring: %v", err)
	}
	return s, rw
}

// dialStarted dials n clients and has each ping answered, so that each
// connection has started; then it waits until only the test writes to
// them. It returns what each client reads.
func dialStarted(t *testing.T, s *wsTestServer, n int) []*bufio.Reader {
	t.Helper()
	var frames []*bufio.Reader
	var conns []*Conn
	for i := range n {
		client, r := dialRaw(t, s, 0, 0)
		pingPong(t, client, r, fmt.Sprint("client ", i))
		frames, conns = append(frames, r), append(conns, s.connOf(t, client.LocalAddr()))
	}
	s.quiesce(t, conns...)
	return frames
}

// publishAll publishes texts to the default topic, in order.
func publishAll(t *testing.T, s *wsTestServer, texts ...string) {
	t.Helper()
	for _, text := range texts {
		if _, _, err := s.hub.Publish("default", text); err != nil {
			t.Fatal(err)
		}
	}
}

// Several messages waiting for each of many connections go out in one
// round: one send a connection, all in one submission, and no write(2).
func TestARingRoundSendsTheBatchesOfManyConnectionsInOneSubmission(t *testing.T) {
	t.Parallel()
	s, rw := startRingServer(t)
	defer rw.close()
	const clients, waiting = 10, 5
	frames := dialStarted(t, s, clients)
	var texts []string
	for i := range waiting {
		texts = append(texts, fmt.Sprint("message ", i))
	}
	publishAll(t, s, texts...)
	batch := s.engine.pool.shards[0].take()
	if len(batch) != clients {
		t.Fatalf("%d connections queued, want %d", len(batch), clients)
	}

	sendsBefore := s.engine.RingSends()
	runtime.LockOSThread()
	writesBefore, _ := threadWrites(t)
	rest, err := rw.writeRound(batch, newBatchWriter())
	writesAfter, _ := threadWrites(t)
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 0 {
		t.Errorf("the round left %d of %d connections for another, want one round for all", len(rest), clients)
	}
	if sends := s.engine.RingSends() - sendsBefore; sends != clients {
		t.Errorf("io_uring carried %d sends for %d connections with %d messages each, want one send a connection", sends, clients, waiting)
	}
	if writes := writesAfter - writesBefore; writes != 0 {
		t.Errorf("the round also made %d write(2) calls, want none", writes)
	}
	for _, r := range frames {
		expectTexts(t, r, texts...)
	}
}

// A send that finds the socket full sends nothing: the connection's own
// goroutine then writes the whole batch as the client reads, once.
func TestARingSendThatFindsTheSocketFullIsFinishedByTheConnectionsGoroutine(t *testing.T) {
	t.Parallel()
	s, rw := startRingServer(t)
	defer rw.close()
	client, frames := dialRaw(t, s, 4<<10, 4<<10) // it stops reading
	pingPong(t, client, frames, "started")
	c := s.connOf(t, client.LocalAddr())
	s.quiesce(t, c)

	// The test holds the writing side and fills the socket with whole
	// frames, given room for all of them, each marked as the end of a
	// record so that no later send is added to it; then it takes the room
	// away, below what waits, so that the next send finds none at all.
	if !c.own() {
		t.Fatal("the writing side is taken")
	}
	var fillers []string
	func() {
		if !c.holdFD() {
			t.Fatal("the socket is closed")
		}
		defer c.fdMu.RUnlock()
		if err := syscall.SetsockoptInt(c.fdNum, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 1<<20); err != nil {
			t.Fatal(err)
		}
		for i := range 16 {
			text := fmt.Sprintf("filler %02d ", i) + strings.Repeat("f", 4<<10)
			frame := appendFrame(nil, opText, []byte(text))
			n, err := syscall.SendmsgN(c.fdNum, frame, nil, nil, syscall.MSG_DONTWAIT|syscall.MSG_EOR)
			if err != nil || n != len(frame) {
				t.Fatalf("filler %d: sent %d of %d bytes, %v: the socket should have room for all", i, n, len(frame), err)
			}
			fillers = append(fillers, text)
		}
		if err := syscall.SetsockoptInt(c.fdNum, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4<<10); err != nil {
			t.Fatal(err)
		}
		unsent, err := unix.IoctlGetInt(c.fdNum, unix.SIOCOUTQ)
		if err != nil {
			t.Fatal(err)
		}
		room, err := syscall.GetsockoptInt(c.fdNum, syscall.SOL_SOCKET, syscall.SO_SNDBUF)
		if err != nil {
			t.Fatal(err)
		}
		if unsent <= room {
			t.Fatalf("%d bytes wait in a send buffer of %d: the next send would find room", unsent, room)
		}
	}()
	if !c.release() {
		t.Fatal("the test could not let go of the writing side")
	}

	texts := []string{"into a full socket 0", "into a full socket 1", "into a full socket 2"}
	publishAll(t, s, texts...)
	if _, err := rw.writeRound(s.engine.pool.shards[0].take(), newBatchWriter()); err != nil {
		t.Fatal(err)
	}
	if res := rw.res[:1][0]; res != -int32(syscall.EAGAIN) {
		t.Fatalf("the send's result was %d, want -EAGAIN (%d): the test did not make the socket full", res, -int32(syscall.EAGAIN))
	}
	c.mu.Lock()
	held := c.writing
	c.mu.Unlock()
	if !held {
		t.Fatal("nothing holds the writing side, though the batch is unwritten")
	}

	expectTexts(t, frames, append(fillers, texts...)...)
	// The goroutine let go once it was done: the shard writes again.
	publishAll(t, s, "after")
	if err := rw.writeRounds(s.engine.pool.shards[0].take(), newBatchWriter()); err != nil {
		t.Fatal(err)
	}
	expectTexts(t, frames, "after")
}

// A ring whose submission fails breaks for good: the connections of the
// round it failed in are written the blocking way, and from then on the
// shard writes to each connection on its own, with nothing lost.
func TestAShardWhoseRingBreaksWritesToEachConnectionOnItsOwn(t *testing.T) {
	t.Parallel()
	s, rw := startRingServer(t)
	pool := s.engine.pool
	shard := pool.shards[0]
	pool.running.Go(func() { shard.run(pool.stopping, rw, pool.log) }) // it closes the ring when the engine stops
	const clients = 8
	var frames []*bufio.Reader
	for range clients {
		_, r := dialRaw(t, s, 0, 0)
		frames = append(frames, r)
	}
	deliver := func(text string) {
		t.Helper()
		publishAll(t, s, text)
		for _, r := range frames {
			expectTexts(t, r, text)
		}
	}
	deliver("before the break")
	if s.engine.RingSends() == 0 {
		t.Fatal("io_uring carried nothing before the break")
	}
	// The shard may still be settling the round, and would write what is
	// published meanwhile the blocking way; once it has let go of every
	// connection, its next round is the next publish's.
	for _, c := range s.conns() {
		waitUntil(t, "the shard has let go of every connection", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return !c.writing
		})
	}

	breakRing(t, rw)
	deliver("in the round that breaks")
	s.logs.waitFor(t, "io_uring failed: this writer now writes to each connection on its own")
	sendsAfterBreak := s.engine.RingSends()
	for i := range 5 {
		deliver(fmt.Sprint("after the break ", i))
	}
	if sends := s.engine.RingSends(); sends != sendsAfterBreak {
		t.Errorf("io_uring carried %d more sends after it broke, want none", sends-sendsAfterBreak)
	}
}

// fullBatches has clients subscribers each owed one delivery at its cap,
// which makes a few rounds: the first holds perRound of them. Their
// clients read as the batches come, since a socket takes less than a
// batch at once; readAll waits for them and fails the test unless each
// got every message once, in order.
type fullBatches struct {
	batch    []*Conn // the connections, as the shard takes them
	frames   []*bufio.Reader
	perConn  int // bytes of frames in each connection's batch
	perRound int
	readAll  func()
}

func newFullBatches(t *testing.T, s *wsTestServer, clients int) *fullBatches {
	t.Helper()
	frames := dialStarted(t, s, clients)
	var texts []string
	perConn := 0
	for i := range 4 {
		text := fmt.Sprintf("big %d ", i) + strings.Repeat("b", app.DeliveryBytes/4-6)
		texts = append(texts, text)
		perConn += len(appendFrame(nil, opText, []byte(text)))
	}
	perRound := (ringArenaBytes + perConn - 1) / perConn // the round stops once the arena holds the limit
	if perRound >= clients {
		t.Fatalf("a round holds %d connections' batches: too few clients to need a second", perRound)
	}
	publishAll(t, s, texts...)
	batch := s.engine.pool.shards[0].take()
	if len(batch) != clients {
		t.Fatalf("%d connections queued, want %d", len(batch), clients)
	}
	read := make([]error, clients)
	var readers sync.WaitGroup
	for i, r := range frames {
		readers.Go(func() {
			got, err := readTexts(r, len(texts))
			for j := 0; err == nil && j < len(texts); j++ {
				if got[j] != texts[j] {
					err = fmt.Errorf("message %d: got %q, want %q", j, clip(got[j]), clip(texts[j]))
				}
			}
			read[i] = err
		})
	}
	readAll := func() {
		t.Helper()
		readers.Wait()
		for i, err := range read {
			if err != nil {
				t.Errorf("client %d: %v", i, err)
			}
		}
	}
	return &fullBatches{batch: batch, frames: frames, perConn: perConn, perRound: perRound, readAll: readAll}
}

// A round ends early once its batches hold ringArenaBytes, and the
// connections it did not reach are written in the next, each once.
func TestARingRoundEndsOnceItHoldsTheArenasBytes(t *testing.T) {
	t.Parallel()
	s, rw := startRingServer(t)
	defer rw.close()
	const clients = 20
	b := newFullBatches(t, s, clients)

	w := newBatchWriter()
	sendsBefore := s.engine.RingSends()
	rest, err := rw.writeRound(b.batch, w)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != clients-b.perRound {
		t.Errorf("the round left %d connections for the next, want %d: %d batches of %d bytes reach the limit of %d",
			len(rest), clients-b.perRound, b.perRound, b.perConn, ringArenaBytes)
	}
	if sends := s.engine.RingSends() - sendsBefore; sends != uint64(clients-len(rest)) {
		t.Errorf("the round carried %d sends for %d connections", sends, clients-len(rest))
	}
	if err := rw.writeRounds(rest, w); err != nil {
		t.Fatal(err)
	}
	b.readAll()
	// Nothing came twice: the next message is the next published.
	publishAll(t, s, "last")
	if err := rw.writeRounds(s.engine.pool.shards[0].take(), w); err != nil {
		t.Fatal(err)
	}
	for _, r := range b.frames {
		expectTexts(t, r, "last")
	}
}

// A ring that fails in the first round of a batch leaves that round's
// connections to their own goroutines and writes the rest one at a time:
// every connection gets everything, once.
func TestARingThatBreaksInTheFirstRoundStillWritesEveryConnection(t *testing.T) {
	t.Parallel()
	s, rw := startRingServer(t)
	defer rw.close()
	const clients = 20
	b := newFullBatches(t, s, clients)
	breakRing(t, rw)

	sendsBefore := s.engine.RingSends()
	if err := rw.writeRounds(b.batch, newBatchWriter()); err == nil {
		t.Fatal("a ring that cannot submit reported no error")
	}
	if rw.usable() {
		t.Error("the ring is still taken for usable after it failed")
	}
	if sends := s.engine.RingSends() - sendsBefore; sends != uint64(b.perRound) {
		t.Errorf("%d sends counted, want the %d of the round that failed", sends, b.perRound)
	}
	b.readAll()
}

// breakRing makes the ring's next submission fail for real: its descriptor
// now names /dev/null.
func breakRing(t *testing.T, rw *ringWriter) {
	t.Helper()
	null, err := syscall.Open(os.DevNull, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(null)
	if err := syscall.Dup2(null, rw.ring.ring.FD()); err != nil {
		t.Fatal(err)
	}
}
