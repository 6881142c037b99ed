package bench

import (
	"fmt"
	"strconv"
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

func decodePayload(b []byte) (seq int, sent time.Time, ok bool) {
	if len(b) < minPayload {
		return 0, time.Time{}, false
	}
	seq, err1 := strconv.Atoi(string(b[:seqDigits]))
	nanos, err2 := strconv.ParseInt(string(b[seqDigits+1:seqDigits+1+timeDigits]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, time.Time{}, false
	}
	return seq, time.Unix(0, nanos), true
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

// read records frames until it has seen every message or the connection
// ends.
func (s *subscriber) read(messages int) {
	for s.distinct < messages {
		_, data, err := s.conn.ReadMessage()
		if err != nil {
			return
		}
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
