package app

import (
	"encoding/json"
	"strconv"
	"sync"
	"time"
)

// DefaultTopic is the topic of every message and subscriber that names none,
// which keeps the original /ws and /notify?msg= clients working unchanged.
const DefaultTopic = "default"

// Message is one published message. It is shared, read-only, by every
// subscriber it is handed to and by the topic's history.
type Message struct {
	// ID increases strictly within the topic, in publish order, also across
	// restarts (see Hub).
	ID uint64
	// Topic is the topic the message was published to.
	Topic string
	// Time is when the server accepted the message.
	Time time.Time
	// Text is the message exactly as published: valid UTF-8, never empty.
	Text string

	// offset is the topic's byte count up to and including this message,
	// set once when the message is kept: a subscriber's lag is the
	// distance in bytes between two offsets.
	offset uint64

	// The JSON form is built once, by the first subscriber that wants it,
	// however many subscribers receive the message.
	encodeOnce sync.Once
	encoded    []byte
}

// JSON is the message as one JSON object: {"id","topic","time","msg"}. The
// id is a string, as in the notify receipt and SSE, so that no client has
// to trust its number type with 64 bits.
func (m *Message) JSON() []byte {
	m.encodeOnce.Do(func() {
		m.encoded, _ = json.Marshal(messageJSON{
			ID:    strconv.FormatUint(m.ID, 10),
			Topic: m.Topic,
			Time:  m.Time.UTC().Format(time.RFC3339Nano),
			Msg:   m.Text,
		}) // strings only: Marshal cannot fail
	})
	return m.encoded
}

type messageJSON struct {
	ID    string `json:"id"`
	Topic string `json:"topic"`
	Time  string `json:"time"`
	Msg   string `json:"msg"`
}
