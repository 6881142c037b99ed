package app

import (
	"errors"
	"fmt"
)

// MaxTopicLength is the longest topic name.
const MaxTopicLength = 64

// ErrInvalidTopic reports a topic name outside the allowed form.
var ErrInvalidTopic = errors.New("invalid topic")

// CheckTopic reports whether name can be a topic: 1 to 64 characters of
// letters, digits, '_', '.' and '-'. The set is small so that a topic can
// sit unescaped in a URL, a log line and a store key.
func CheckTopic(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: the name is empty: use 1 to %d letters, digits, '_', '.' or '-'", ErrInvalidTopic, MaxTopicLength)
	case len(name) > MaxTopicLength:
		return fmt.Errorf("%w: the name is %d bytes long, the limit is %d", ErrInvalidTopic, len(name), MaxTopicLength)
	}
	for _, r := range name {
		if !topicRune(r) {
			return fmt.Errorf("%w %q: %q is not allowed: use letters, digits, '_', '.' or '-'", ErrInvalidTopic, name, r)
		}
	}
	return nil
}

func topicRune(r rune) bool {
	return r == '_' || r == '.' || r == '-' ||
		(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
}
