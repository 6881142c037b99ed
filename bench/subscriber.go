package bench

import (
	"fmt"
	"io"
	"time"

	"github.com/gorilla/websocket"
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
// allocates nothing: it runs for every frame, and a load generator that
// collects garbage every few hundred milliseconds measures its own pauses
// as the server's latency.
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

// subscriber is one WebSocket connection and what it received. Only its
// read goroutine writes to it until the connection is closed.
type subscriber struct {
	conn     *websocket.Conn
	latency  []uint32 // by sequence number: microseconds plus one, 0 until it arrives
	distinct int
	dupes    int
	foreign  int // frames that are not benchmark payloads
	lastAt   time.Time
}

func newSubscriber(conn *websocket.Conn, messages int) *subscriber {
	return &subscriber{conn: conn, latency: make([]uint32, messages)}
}

// latencyOf is how long message seq took to arrive, in microseconds, if it
// did.
func (s *subscriber) latencyOf(seq int) (micros uint32, seen bool) {
	if s.latency[seq] == 0 {
		return 0, false
	}
	return s.latency[seq] - 1, true
}

// next reads the next message into buf, growing it only when a message
// does not fit.
func (s *subscriber) next(buf []byte) ([]byte, error) {
	_, r, err := s.conn.NextReader()
	if err != nil {
		return nil, err
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// read records frames until it has seen every message or the connection
// ends.
func (s *subscriber) read(messages int) {
	var buf []byte // one per subscriber, reused for every frame
	for s.distinct < messages {
		data, err := s.next(buf[:0])
		if err != nil {
			return
		}
		buf = data
		now := time.Now()
		seq, sent, ok := decodePayload(data)
		if !ok || seq < 0 || seq >= len(s.latency) {
			s.foreign++
			continue
		}
		if s.latency[seq] != 0 {
			s.dupes++
			continue
		}
		s.latency[seq] = uint32(min(max(now.Sub(sent).Microseconds(), 0), 1<<32-2)) + 1
		s.distinct++
		s.lastAt = now
	}
}
