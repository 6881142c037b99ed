package app

import "time"

// DefaultTopic is the topic of every message and subscriber that names none,
// which keeps the original /ws and /notify?msg= clients working unchanged.
const DefaultTopic = "default"

// Message is one published message. It is shared, read-only, by every
// subscriber it is handed to.
type Message struct {
	// ID increases strictly within the topic, in publish order.
	ID uint64
	// Topic is the topic the message was published to.
	Topic string
	// Time is when the server accepted the message.
	Time time.Time
	// Text is the message exactly as published: valid UTF-8, never empty.
	Text string
}
