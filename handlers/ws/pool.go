package ws

import (
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// writerPool writes to every WebSocket connection without a goroutine per
// connection. A connection that has something to send (a message, a ping,
// a notice, a close) is queued on its shard, and the shard's one goroutine
// writes to it without blocking: it takes everything pending and sends it
// in one write. Only a connection whose socket is full gets a goroutine of
// its own, for as long as it takes to drain it. One timer pings every
// connection. On Linux each shard sends a round of connections' batches
// with one io_uring submission instead of a write each (ringWriter).
//
// Its goroutines run from newWriterPool until stop, which the engine
// calls once every connection has finished.
type writerPool struct {
	shards       []*writerShard
	pingInterval time.Duration
	useRing      bool // io_uring is on in the config and the kernel allows it
	ringSends    atomic.Uint64
	ringRefused  atomic.Bool // a shard could not get its ring, which was logged
	log          *slog.Logger

	mu    sync.Mutex
	conns map[*Conn]struct{}
	next  int // the shard for the next connection

	stopping chan struct{} // closed by stop
	running  sync.WaitGroup
}

// writerShard is one writing goroutine and its queue.
type writerShard struct {
	mu    sync.Mutex
	queue []*Conn
	spare []*Conn
	wake  chan struct{}
}

// newWriterPool starts a pool of shards writers and its ping timer. With
// useRing, it checks once that the kernel allows io_uring, and says so if
// it does not.
func newWriterPool(shards int, pingInterval time.Duration, useRing bool, log *slog.Logger) *writerPool {
	p := &writerPool{pingInterval: pingInterval, conns: map[*Conn]struct{}{}, log: log, stopping: make(chan struct{})}
	for range max(shards, 1) {
		p.shards = append(p.shards, &writerShard{wake: make(chan struct{}, 1)})
	}
	if useRing {
		if ring, err := openSendRing(ringRound); err != nil {
			log.Info("websocket.io_uring is on, but this kernel does not allow it: each connection gets a write of its own", "err", err)
		} else {
			ring.close()
			p.useRing = true
		}
	}
	for _, shard := range p.shards {
		p.running.Go(func() { shard.run(p.stopping, p.ringWriter(), p.log) })
	}
	p.running.Go(p.ping)
	return p
}

// stop ends the pool's goroutines and waits for them.
func (p *writerPool) stop() {
	close(p.stopping)
	p.running.Wait()
}

// ringWriter gives a starting shard its ring, or nil to write one
// connection at a time.
func (p *writerPool) ringWriter() *ringWriter {
	if !p.useRing {
		return nil
	}
	rw, err := newRingWriter(&p.ringSends)
	if err != nil {
		// Said once: on kernels before 5.12 every ring counts against
		// RLIMIT_MEMLOCK, so a machine with many CPUs may get some rings
		// and not the rest, every time the pool starts.
		if !p.ringRefused.Swap(true) {
			p.log.Warn("could not set up io_uring for a writer: it writes to each connection on its own", "err", err)
		}
		return nil
	}
	return rw
}

// add registers c and gives it a shard.
func (p *writerPool) add(c *Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns[c] = struct{}{}
	c.shard = p.shards[p.next%len(p.shards)]
	p.next++
}

// remove forgets c.
func (p *writerPool) remove(c *Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

// ping asks every connection to send a ping, every pingInterval, until
// stop.
func (p *writerPool) ping() {
	ticker := time.NewTicker(p.pingInterval)
	defer ticker.Stop()
	for {
		select {
		case <-p.stopping:
			return
		case <-ticker.C:
			p.mu.Lock()
			for c := range p.conns {
				c.pingDue.Store(true)
				c.enqueue()
			}
			p.mu.Unlock()
		}
	}
}

// push queues c for its shard's goroutine.
func (s *writerShard) push(c *Conn) {
	s.mu.Lock()
	s.queue = append(s.queue, c)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run writes to queued connections until stop closes, a round at a time
// through rw if it is not nil.
func (s *writerShard) run(stop <-chan struct{}, rw *ringWriter, log *slog.Logger) {
	w := newBatchWriter()
	if rw != nil {
		defer rw.close()
	}
	for {
		select {
		case <-stop:
			return
		case <-s.wake:
		}
		// The publish that woke this goroutine made it the next to run,
		// ahead of other publishers that are ready too. Letting them go
		// first means each connection gets everything they publish in one
		// write, rather than one write per message: under load that is
		// most of the difference in CPU per delivery. When nothing else is
		// ready this costs nothing.
		runtime.Gosched()
		for {
			s.mu.Lock()
			batch := s.queue
			if len(batch) == 0 {
				s.mu.Unlock()
				break
			}
			// The two slices take turns, so that pushing never allocates
			// once both have grown to the pool's size.
			s.queue, s.spare = s.spare[:0], nil
			s.mu.Unlock()
			if rw.usable() {
				if err := rw.writeRounds(batch, w); err != nil {
					log.Error("io_uring failed: this writer now writes to each connection on its own", "err", err)
				}
			} else {
				writeEach(batch, w)
			}
			clear(batch) // let closed connections go
			s.mu.Lock()
			s.spare = batch[:0]
			s.mu.Unlock()
		}
	}
}

// writeEach writes to each queued connection in turn, a write each.
func writeEach(batch []*Conn, w *batchWriter) {
	for _, c := range batch {
		c.queued.Store(false)
		c.writePending(w)
	}
}
