package bench

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// routes are the URLs the subscribers and the publishes go to. URLs given
// comma-separated are taken in turn; with several topics, each URL is
// expanded once per topic with Herald's topic parameter. Subscriber i
// watches topic i mod N, and message k is published to topic k mod N.
type routes struct {
	subscribe [][]string // by URL, then by topic
	publish   [][]string
	topics    int
}

func newRoutes(o Options) (routes, error) {
	r := routes{topics: max(o.Topics, 1)}
	var err error
	if r.subscribe, err = expand("-ws", o.SubscribeURL, []string{"ws://", "wss://"}, o); err != nil {
		return routes{}, err
	}
	if r.publish, err = expand("-publish", o.PublishURL, []string{"http://", "https://"}, o); err != nil {
		return routes{}, err
	}
	return r, nil
}

// expand checks a flag's comma-separated URLs and names each topic in each.
func expand(flag, urls string, schemes []string, o Options) ([][]string, error) {
	var out [][]string
	for _, raw := range strings.Split(urls, ",") {
		if !hasAnyPrefix(raw, schemes) {
			return nil, fmt.Errorf("bench: %s %q is not a %s URL", flag, raw, strings.Join(schemes, " or "))
		}
		if o.Topics <= 1 {
			out = append(out, []string{raw}) // the topic the URL names, or the server's default
			continue
		}
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("bench: %s %q: %w", flag, raw, err)
		}
		query := u.Query()
		if query.Has("topic") {
			return nil, fmt.Errorf("bench: -topics %d names each URL's topic, but %s %q names one already", o.Topics, flag, raw)
		}
		perTopic := make([]string, o.Topics)
		for t := range perTopic {
			query.Set("topic", topicName(o.TopicPrefix, t))
			u.RawQuery = query.Encode()
			perTopic[t] = u.String()
		}
		out = append(out, perTopic)
	}
	return out, nil
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// topicName is the name of topic t of a run.
func topicName(prefix string, t int) string { return prefix + strconv.Itoa(t) }

// subscriber is the URL subscriber i connects to, and its topic.
func (r routes) subscriber(i int) (url string, topic int) {
	topic = i % r.topics
	return r.subscribe[i%len(r.subscribe)][topic], topic
}

// publisher is the URL publisher p sends message seq to.
func (r routes) publisher(p, seq int) string {
	return r.publish[p%len(r.publish)][seq%r.topics]
}

// messagesOf is how many of a run's messages go to topic t of topics.
func messagesOf(messages, t, topics int) int {
	if t >= messages {
		return 0
	}
	return (messages - t + topics - 1) / topics
}
