package app

import (
	"encoding/json"
	"strconv"
)

// NoticeKind says what a notice tells a subscriber. Message frames never
// carry a type, which is how clients tell notices from messages.
type NoticeKind string

// The notices a subscriber may be sent besides its messages.
const (
	// NoticeLost: history did not reach back far enough, or the subscriber
	// fell too far behind and skipped ahead, so messages were lost just
	// before those that follow.
	NoticeLost NoticeKind = "lost"
	// NoticePresence: the topic's subscriber count changed (only for
	// subscribers that asked for presence).
	NoticePresence NoticeKind = "presence"
	// NoticeBroker: the shared broker went away, so nothing new arrives,
	// or came back, and what was published meanwhile follows.
	NoticeBroker NoticeKind = "broker"
	// NoticeExpired: the subscriber's credential ran out, and the
	// subscription ends.
	NoticeExpired NoticeKind = "expired"
)

// Notice is something a subscriber is told that is not a message.
type Notice struct {
	Kind NoticeKind
	// JSON is the notice as clients get it: an object whose "type" is
	// Kind.
	JSON []byte
}

// LostNotice says that messages after gap.Since were lost:
// {"type":"lost","topic","since","count"}, count null when unknown.
func LostNotice(topic string, gap *Gap) Notice {
	notice := struct {
		Type  NoticeKind `json:"type"`
		Topic string     `json:"topic"`
		Since string     `json:"since"`
		Count *uint64    `json:"count"`
	}{Type: NoticeLost, Topic: topic, Since: strconv.FormatUint(gap.Since, 10)}
	if gap.Known {
		missing := gap.Missing
		notice.Count = &missing
	}
	return newNotice(NoticeLost, notice)
}

// PresenceNotice says how many subscribers a topic has:
// {"type":"presence","topic","subscribers"}.
func PresenceNotice(topic string, subscribers int) Notice {
	return newNotice(NoticePresence, struct {
		Type        NoticeKind `json:"type"`
		Topic       string     `json:"topic"`
		Subscribers int        `json:"subscribers"`
	}{NoticePresence, topic, subscribers})
}

// BrokerNotice says whether the shared broker answers:
// {"type":"broker","state":"down"|"up"}.
func BrokerNotice(up bool) Notice {
	state := "down"
	if up {
		state = "up"
	}
	return newNotice(NoticeBroker, struct {
		Type  NoticeKind `json:"type"`
		State string     `json:"state"`
	}{NoticeBroker, state})
}

// ExpiredNotice says that a subscription's credential ran out:
// {"type":"expired","topic"}.
func ExpiredNotice(topic string) Notice {
	return newNotice(NoticeExpired, struct {
		Type  NoticeKind `json:"type"`
		Topic string     `json:"topic"`
	}{NoticeExpired, topic})
}

func newNotice(kind NoticeKind, v any) Notice {
	b, _ := json.Marshal(v) // strings and numbers only: Marshal cannot fail
	return Notice{Kind: kind, JSON: b}
}
