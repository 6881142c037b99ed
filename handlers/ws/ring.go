package ws

import (
	"net"
	"sync/atomic"
	"syscall"
)

// ringWriter is how a writer shard writes a round of connections with one
// system call: it collects the batches of up to ringRound of them into one
// buffer, sends them all with one io_uring submission, and settles each as
// writeOwned would. A connection it cannot send that way (TLS, a slow
// subscriber being ended) takes writeOwned's path.
type ringWriter struct {
	ring  *sendRing
	arena []byte // the round's batches, one after another
	round []ringSend
	fds   []int
	bufs  [][]byte
	res   []int32
	sends *atomic.Uint64 // counts the sends it carries, for the metric
}

// ringSend is one connection's part of a round.
type ringSend struct {
	c          *Conn
	start, end int // its batch in the arena
	closing    bool
}

const (
	// ringRound is the most sends in one submission. The first send of a
	// round waits for the whole round to be collected, so rounds stay
	// short; longer rounds saved no CPU and delayed the first delivery
	// (bench/PERFORMANCE.md has the rounds tried).
	ringRound = 64
	// ringArenaBytes ends a round early once its batches hold this much,
	// so that a burst does not gather 64 batches of 64 KiB each.
	ringArenaBytes = 1 << 20
)

// newRingWriter opens a ring; sends counts what it carries.
func newRingWriter(sends *atomic.Uint64) (*ringWriter, error) {
	ring, err := openSendRing(ringRound)
	if err != nil {
		return nil, err
	}
	return &ringWriter{ring: ring, arena: make([]byte, 0, 64<<10), sends: sends}, nil
}

// usable reports whether the ring still works; a ring that failed has
// closed, and the shard writes one connection at a time from then on.
func (rw *ringWriter) usable() bool { return rw != nil && !rw.ring.broken }

func (rw *ringWriter) close() { rw.ring.close() }

// writeRounds writes to every connection in batch, a round at a time, and
// reports an error if the ring failed on the way; the connections of the
// failed round were still written, the blocking way.
func (rw *ringWriter) writeRounds(batch []*Conn, w *batchWriter) error {
	for len(batch) > 0 {
		var err error
		if batch, err = rw.writeRound(batch, w); err != nil {
			writeEach(batch, w)
			return err
		}
	}
	return nil
}

// writeRound writes one round from the front of batch and returns the
// connections it did not reach.
func (rw *ringWriter) writeRound(batch []*Conn, w *batchWriter) (rest []*Conn, err error) {
	arena, round := rw.arena[:0], rw.round[:0]
	i := 0
	for ; i < len(batch) && len(round) < ringRound && len(arena) < ringArenaBytes; i++ {
		c := batch[i]
		c.queued.Store(false)
		if !c.own() {
			continue // someone else is writing, and will find what is pending
		}
		if c.fdNum < 0 || c.sub.EndedSlow() {
			c.writeOwned(w)
			continue
		}
		start := len(arena)
		var closing bool
		arena, closing = c.collect(arena)
		if len(arena) == start {
			if !c.release() {
				c.writeOwned(w)
			}
			continue
		}
		// Held until the send completes, so that it never lands on a
		// descriptor closed meanwhile and given to another connection.
		if !c.holdFD() {
			c.finishWrite(arena[start:], 0, net.ErrClosed, closing)
			arena = arena[:start]
			continue
		}
		round = append(round, ringSend{c: c, start: start, end: len(arena), closing: closing})
	}

	// The arena may have moved as it grew, so the batches are sliced from
	// it only now.
	fds, bufs, res := rw.fds[:0], rw.bufs[:0], rw.res[:0]
	for _, s := range round {
		fds = append(fds, s.c.fdNum)
		bufs = append(bufs, arena[s.start:s.end])
		res = append(res, 0)
	}
	if len(round) > 0 {
		rw.sends.Add(uint64(len(round))) // before, so that no subscriber sees a send the metric has not
		err = rw.ring.sendAll(fds, bufs, res)
	}
	for j, s := range round {
		s.c.fdMu.RUnlock()
		n, sendErr := sentBytes(res[j])
		if s.c.finishWrite(bufs[j], n, sendErr, s.closing) {
			s.c.writeOwned(w) // more came meanwhile: this one goes on alone
		}
	}

	clear(round)
	clear(bufs)
	rw.round, rw.fds, rw.bufs, rw.res = round[:0], fds[:0], bufs[:0], res[:0]
	switch {
	case err != nil:
		rw.arena = nil // the kernel may not be done with it
	case cap(arena) <= 2*ringArenaBytes:
		rw.arena = arena[:0]
	}
	return batch[i:], err
}

// sentBytes reads a send's result: the bytes it sent, none if the socket
// was full (the rest then goes the blocking way), or its error.
func sentBytes(res int32) (int, error) {
	switch {
	case res >= 0:
		return int(res), nil
	case syscall.Errno(-res) == syscall.EAGAIN, syscall.Errno(-res) == syscall.EINTR:
		return 0, nil
	default:
		return 0, syscall.Errno(-res)
	}
}
