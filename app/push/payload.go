package push

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/SherClockHolmes/webpush-go"
)

// Message is a published message, as push needs it.
type Message struct {
	Topic string
	ID    uint64
	Text  string
	Time  time.Time
}

// A push is one encrypted record of webpush.MaxRecordSize bytes, the most
// that every push service must take (RFC 8291, section 4). webpush-go pads
// every push to that size, which also hides how long a message is: the
// record's header (salt, record size, key length and the server's
// ephemeral P-256 key), then the payload, one delimiter byte, the padding,
// and the AES-GCM tag.
const (
	recordHeaderBytes = 16 + 4 + 1 + 65
	delimiterBytes    = 1
	gcmTagBytes       = 16
	// MaxPayloadBytes is the most a push's JSON may take.
	MaxPayloadBytes = int(webpush.MaxRecordSize) - recordHeaderBytes - delimiterBytes - gcmTagBytes
)

// CutMarker ends the text of a message cut to fit in a push.
const CutMarker = "…"

// payload is what the service worker reads from a push.
type payload struct {
	Topic string `json:"topic"`
	ID    string `json:"id"`
	Text  string `json:"text"`
	Time  string `json:"time"`
	// Cut says that Text is the start of the message, ending with
	// CutMarker: the whole message did not fit.
	Cut bool `json:"cut,omitempty"`
}

// Payload is m as a push carries it: JSON {"topic","id","text","time"},
// the id a string as everywhere else. A message too long for a push keeps
// as much of its text as fits, cut between characters and ending with
// CutMarker, and gets "cut": true; the page links to the whole message.
func Payload(m Message) []byte {
	p := payload{Topic: m.Topic, ID: strconv.FormatUint(m.ID, 10), Text: m.Text, Time: m.Time.UTC().Format(time.RFC3339Nano)}
	if b := encodePayload(p); len(b) <= MaxPayloadBytes {
		return b
	}
	p.Cut = true
	// No prefix longer than the limit fits, and escapes make some text
	// longer in JSON than in UTF-8: search for the longest that fits.
	text := m.Text[:min(len(m.Text), MaxPayloadBytes)]
	atRune := func(n int) string {
		for n < len(text) && n > 0 && !utf8.RuneStart(text[n]) {
			n--
		}
		return text[:n]
	}
	tooLong := sort.Search(len(text)+1, func(n int) bool {
		p.Text = atRune(n) + CutMarker
		return len(encodePayload(p)) > MaxPayloadBytes
	})
	p.Text = atRune(tooLong-1) + CutMarker
	return encodePayload(p)
}

// encodePayload writes p without escaping <, > and &: JSON for a service
// worker, not HTML, and the escapes would take room in the push.
func encodePayload(p payload) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(p) // strings and a bool: Encode cannot fail
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
