package bench

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// A payload is "SEQUENCE SENDTIME " (10 and 19 digits: the message's number
// and its send time in Unix nanoseconds), padded with 'x' to its size.
const (
	seqDigits  = 10
	timeDigits = 19
	minPayload = seqDigits + 1 + timeDigits + 1
)

func encodePayload(seq int, sent time.Time, size int) []byte {
	b := make([]byte, 0, size)
	b = fmt.Appendf(b, "%0*d %0*d ", seqDigits, seq, timeDigits, sent.UnixNano())
	for len(b) < size {
		b = append(b, 'x')
	}
	return b
}

// decodePayload reads a payload's sequence number and send time. It
// allocates nothing: it runs for every frame.
func decodePayload(b []byte) (seq int, sent time.Time, ok bool) {
	if len(b) < minPayload || b[seqDigits] != ' ' || b[seqDigits+1+timeDigits] != ' ' {
		return 0, time.Time{}, false
	}
	seq, ok1 := parseDigits(b[:seqDigits])
	nanos, ok2 := parseDigits(b[seqDigits+1 : seqDigits+1+timeDigits])
	if !ok1 || !ok2 {
		return 0, time.Time{}, false
	}
	return seq, time.Unix(0, int64(nanos)), true
}

// parseDigits reads at most 19 decimal digits, which fit an int64.
func parseDigits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// socket is a subscriber's connection as the load generator reads it.
// Each read reports when its bytes reached the subscriber's machine, or the
// zero time when only the read's own time is known.
type socket interface {
	recv(p []byte) (n int, arrived time.Time, err error)
	send(p []byte) error // a pong or a close; small, so it is written whole
}

// plainSocket reads with Read; the arrival time is when the read returns.
type plainSocket struct{ conn net.Conn }

func (s plainSocket) recv(p []byte) (int, time.Time, error) {
	n, err := s.conn.Read(p)
	if n > 0 {
		return n, time.Time{}, nil // an error comes back with the next read
	}
	return 0, time.Time{}, err
}

func (s plainSocket) send(p []byte) error {
	_, err := s.conn.Write(p)
	return err
}

// subscriber is one WebSocket connection and what it received. Only its
// reader (a goroutine of its own, or its poll group's) writes to it until
// reading stops.
type subscriber struct {
	conn    net.Conn
	socket  socket
	pending []byte // read from the socket, not yet taken apart as frames
	message []byte // a fragmented message so far

	// It watches topic topic of topics, which gets every topics-th
	// message from the topic-th on: want of them.
	topic, topics int
	want          int

	// By sequence number, microseconds plus one, 0 until it arrives: when
	// the load generator read the message, and when the kernel received it
	// (the same as read when the kernel does not say).
	latency  []uint32
	arrival  []uint32
	kernel   bool // every arrival time came from the kernel
	distinct int
	dupes    int
	foreign  int // frames that are not benchmark payloads of its topic
	lastAt   time.Time
	// Why reading stopped before every message came, unless the load
	// generator closed the connection itself at the end of the wait.
	err error
}

// newSubscriber takes a connection that has finished its handshake, and the
// bytes already read after it, for topic topic of topics in a run of
// messages messages.
func newSubscriber(conn net.Conn, early []byte, messages, topic, topics int) *subscriber {
	s := &subscriber{
		conn:    conn,
		pending: append(make([]byte, 0, max(4<<10, len(early))), early...),
		topic:   topic,
		topics:  topics,
		want:    messagesOf(messages, topic, topics),
		latency: make([]uint32, messages),
		arrival: make([]uint32, messages),
		kernel:  true,
	}
	if conn != nil {
		s.socket = newSocket(conn)
	}
	return s
}

// expects reports whether message seq is published to the subscriber's
// topic.
func (s *subscriber) expects(seq int) bool { return seq%s.topics == s.topic }

// latencyOf is how long message seq took to arrive, in microseconds, if it
// did: until the load generator read it, and until it reached the socket.
func (s *subscriber) latencyOf(seq int) (read, arrived uint32, seen bool) {
	if s.latency[seq] == 0 {
		return 0, 0, false
	}
	return s.latency[seq] - 1, s.arrival[seq] - 1, true
}

// read records messages until it has seen every one of its topic or the
// connection ends. It allocates nothing per frame: a load generator that
// collects garbage every few hundred milliseconds measures its own pauses
// as the server's latency.
func (s *subscriber) read() {
	err := s.readAll()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		s.err = err
	}
}

func (s *subscriber) readAll() error {
	if err := s.takeEarly(); err != nil {
		return err
	}
	for s.distinct < s.want {
		n, arrived, err := s.socket.recv(s.readSpace())
		if err != nil {
			return err
		}
		if err := s.received(n, arrived); err != nil {
			return err
		}
	}
	return nil
}

// takeEarly handles the frames that came with the handshake's reply, read
// before the subscriber existed, so timed now.
func (s *subscriber) takeEarly() error {
	if len(s.pending) == 0 {
		return nil
	}
	now := time.Now()
	return s.takeFrames(now, now)
}

// readSpace is where the next read goes: the free end of pending, grown
// when a frame fills it.
func (s *subscriber) readSpace() []byte {
	if len(s.pending) == cap(s.pending) {
		s.pending = append(s.pending, 0)[:len(s.pending)]
	}
	return s.pending[len(s.pending):cap(s.pending)]
}

// received takes the n bytes just read into readSpace, which reached the
// machine at arrived (zero when the kernel did not say), and handles the
// frames they complete.
func (s *subscriber) received(n int, arrived time.Time) error {
	now := time.Now()
	if arrived.IsZero() {
		arrived, s.kernel = now, false
	}
	s.pending = s.pending[:len(s.pending)+n]
	return s.takeFrames(now, arrived)
}

// takeFrames handles every whole frame in pending, read at now and received
// at arrived, and keeps the part of a frame that follows.
func (s *subscriber) takeFrames(now, arrived time.Time) error {
	rest := s.pending
	defer func() { s.pending = s.pending[:copy(s.pending, rest)] }()
	for {
		f, size, err := parseFrame(rest)
		if err != nil || size == 0 {
			return err
		}
		rest = rest[size:]
		switch f.opcode {
		case opPing:
			if err := s.socket.send(pongFrame(f.payload)); err != nil {
				return err
			}
		case opClose:
			return errClosed
		case opText, opBinary:
			if f.fin {
				s.record(f.payload, now, arrived)
			} else {
				s.message = append(s.message[:0], f.payload...)
			}
		case opContinuation:
			s.message = append(s.message, f.payload...)
			if f.fin {
				s.record(s.message, now, arrived)
			}
		}
	}
}

// record counts one message read at now and received at arrived.
func (s *subscriber) record(data []byte, now, arrived time.Time) {
	seq, sent, ok := decodePayload(data)
	if !ok || seq < 0 || seq >= len(s.latency) || !s.expects(seq) {
		s.foreign++
		return
	}
	if s.latency[seq] != 0 {
		s.dupes++
		return
	}
	s.latency[seq] = micros(now.Sub(sent)) + 1
	s.arrival[seq] = micros(arrived.Sub(sent)) + 1
	s.distinct++
	s.lastAt = now
}

// micros is d in whole microseconds, clamped to what a latency slot holds.
func micros(d time.Duration) uint32 {
	return uint32(min(max(d.Microseconds(), 0), 1<<32-2))
}
