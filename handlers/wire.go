package handlers

import (
	"encoding/json"
	"strconv"
	"unsafe"

	"herald/app"
)

// lostNotice is the frame (WebSocket JSON mode) or event data (SSE) that
// tells a resuming subscriber that history did not reach back far enough:
// {"type":"lost","topic","since","count"}, count null when unknown.
// Message frames never have a "type" field, which is how clients tell the
// two apart.
func lostNotice(topic string, gap *app.Gap) []byte {
	notice := struct {
		Type  string  `json:"type"`
		Topic string  `json:"topic"`
		Since string  `json:"since"`
		Count *uint64 `json:"count"`
	}{Type: "lost", Topic: topic, Since: strconv.FormatUint(gap.Since, 10)}
	if gap.Known {
		notice.Count = &gap.Missing
	}
	b, _ := json.Marshal(notice) // strings and a number: Marshal cannot fail
	return b
}

// presenceNotice tells a subscriber how many subscribers its topic has:
// {"type":"presence","topic","subscribers"}.
func presenceNotice(topic string, subscribers int) []byte {
	b, _ := json.Marshal(struct {
		Type        string `json:"type"`
		Topic       string `json:"topic"`
		Subscribers int    `json:"subscribers"`
	}{"presence", topic, subscribers}) // cannot fail
	return b
}

// brokerNotice tells a subscriber that the shared broker went away, so
// nothing new arrives, or came back, and what was published meanwhile
// follows: {"type":"broker","state":"down"|"up"}.
func brokerNotice(up bool) []byte {
	state := "down"
	if up {
		state = "up"
	}
	b, _ := json.Marshal(struct {
		Type  string `json:"type"`
		State string `json:"state"`
	}{"broker", state}) // cannot fail
	return b
}

// expiredNotice tells an event stream that its credential ran out:
// {"type":"expired","topic"}. The stream ends after it.
func expiredNotice(topic string) []byte {
	b, _ := json.Marshal(struct {
		Type  string `json:"type"`
		Topic string `json:"topic"`
	}{"expired", topic}) // cannot fail
	return b
}

// textBytes views a message's text as bytes without copying it once per
// subscriber. The writers it is passed to only read it.
func textBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
