// Package ws is Herald's WebSocket engine: it completes the handshake of
// an upgrade request whose subscriber is registered, then reads the
// client's frames and writes the subscriber's messages until either side
// ends it. It knows nothing of Echo or of routes.
//
// Each connection has one reader and one writer at a time. The reader is
// a goroutine that runs only while there is something to read: an idle
// connection has none (see the readiness Poller). The writer is whoever
// holds the connection's writing side: a goroutine of the writer pool,
// which writes to every connection without blocking and sends all that
// is pending in one write, or, while a connection's socket is full, a
// goroutine of its own until it drains.
package ws

import (
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"herald/handlers/readiness"
)

// Config says how the engine treats every connection.
type Config struct {
	// MaxFrameBytes is the largest frame, or message of fragments, a
	// client may send; a larger one closes its connection with 1009.
	MaxFrameBytes int
	// PingInterval is how often every connection is pinged.
	PingInterval time.Duration
	// IdleTimeout is how long a client may send nothing at all, not even
	// a pong, before it is taken for dead.
	IdleTimeout time.Duration
	// WriteTimeout bounds a write that makes no progress: a client that
	// takes no data for this long has stopped reading.
	WriteTimeout time.Duration
	// IOURing sends a round of connections' writes with one system call
	// where the kernel allows io_uring.
	IOURing bool
	// Logger receives connection problems; nil discards them.
	Logger *slog.Logger
}

// Server is the engine: the writer pool, the ping timer and the readiness
// Poller that every connection shares. NewServer starts its goroutines and
// Close stops them, once every connection has finished.
type Server struct {
	cfg    Config
	log    *slog.Logger
	pool   *writerPool
	poller *readiness.Poller
	// pollerFailed says so once, when the Poller fails.
	pollerFailed sync.Once
}

// NewServer checks cfg and starts the engine.
func NewServer(cfg Config) (*Server, error) {
	switch {
	case cfg.MaxFrameBytes < 1:
		return nil, errors.New("ws: MaxFrameBytes must be at least 1")
	case cfg.PingInterval <= 0 || cfg.IdleTimeout <= 0 || cfg.WriteTimeout <= 0:
		return nil, errors.New("ws: PingInterval, IdleTimeout and WriteTimeout must be above 0")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, poller: &readiness.Poller{}}
	s.pool = newWriterPool(runtime.GOMAXPROCS(0), cfg.PingInterval, cfg.IOURing, cfg.Logger)
	return s, nil
}

// RingSends is how many writes io_uring has carried.
func (s *Server) RingSends() uint64 { return s.pool.ringSends.Load() }

// Close stops the engine's goroutines and waits for them. The connections
// must have finished first: the hub's Shutdown ends every subscription,
// and each connection finishes once its close is sent.
func (s *Server) Close() {
	s.poller.Close()
	s.pool.stop()
}
