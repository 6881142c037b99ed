package access

import (
	"fmt"
	"slices"
	"strings"
)

// Patterns are the topics a credential covers. Each is a topic name in
// which * stands for any run of characters: "news", "team-*", "*".
type Patterns []string

// ParsePatterns checks a list of patterns as the config or a JWT gives
// it. A pattern with characters that no topic name has is not refused
// here (app's config check does that, with the topic rules); it matches
// nothing.
func ParsePatterns(list []string) (Patterns, error) {
	for i, p := range list {
		if p == "" {
			return nil, fmt.Errorf("pattern [%d] is empty", i)
		}
	}
	return Patterns(list), nil
}

// Match reports whether any pattern covers topic.
func (ps Patterns) Match(topic string) bool {
	for _, p := range ps {
		if matchPattern(p, topic) {
			return true
		}
	}
	return false
}

// matchPattern matches topic against one pattern, where * is any run of
// characters, empty included. The pattern is split at its stars: the
// first piece must start the topic, the last must end it, and the pieces
// between must appear in order.
func matchPattern(pattern, topic string) bool {
	pieces := strings.Split(pattern, "*")
	if len(pieces) == 1 {
		return pattern == topic
	}
	first, last := pieces[0], pieces[len(pieces)-1]
	if len(topic) < len(first)+len(last) || !strings.HasPrefix(topic, first) || !strings.HasSuffix(topic, last) {
		return false
	}
	middle := topic[len(first) : len(topic)-len(last)]
	for _, piece := range pieces[1 : len(pieces)-1] {
		i := strings.Index(middle, piece)
		if i < 0 {
			return false
		}
		middle = middle[i+len(piece):]
	}
	return true
}

// union is the patterns of ps and others, each once; a list with * is
// just *, since it covers the rest.
func (ps Patterns) union(others Patterns) Patterns {
	var all Patterns
	for _, p := range append(append(Patterns(nil), ps...), others...) {
		if p == "*" {
			return Patterns{"*"}
		}
		if !slices.Contains(all, p) {
			all = append(all, p)
		}
	}
	return all
}
