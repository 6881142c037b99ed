package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Message is one message of a subscription.
type Message struct {
	// ID is the message's id in its topic; ids rise with every message.
	ID uint64
	// Topic is the topic it was published to.
	Topic string
	// Time is when the server accepted it.
	Time time.Time
	// Text is the message exactly as published.
	Text string
	// JSON is the message as the server sent it, one line:
	// {"id","topic","time","msg"}.
	JSON []byte
}

// Subscription says what to subscribe to.
type Subscription struct {
	// Topic is the topic to watch; empty leaves it to the URL's ?topic=,
	// or else to the server's default topic.
	Topic string
	// Resume replays the kept messages with ids above Since before the
	// live ones; Since 0 replays everything kept. Without it the first
	// stream starts with the next message published.
	Resume bool
	Since  uint64
	// Notify is told of everything that is not a message, from
	// Subscribe's goroutine; nil ignores it.
	Notify func(Notice)
}

// NoticeKind says what a Notice is about.
type NoticeKind int

const (
	// NoticeLost: history no longer reached back to Since. Count messages
	// were lost, or an unknown number when Count is nil (the id came from
	// a history the server no longer has).
	NoticeLost NoticeKind = iota + 1
	// NoticeBrokerDown: the server lost its shared broker (Redis), and
	// nothing new arrives until NoticeBrokerUp.
	NoticeBrokerDown
	// NoticeBrokerUp: the broker is back; what was published meanwhile
	// follows.
	NoticeBrokerUp
	// NoticeExpired: the credential ran out and the server ends the
	// stream; a new one needs a new credential.
	NoticeExpired
	// NoticeRetrying: the stream ended, or could not be opened, for Err;
	// Subscribe tries again after Wait.
	NoticeRetrying
	// NoticeReconnected: a stream is open again after NoticeRetrying. With
	// Resumed it resumes after Since; without, no message had come to
	// resume after, so none published in between is replayed.
	NoticeReconnected
)

// Notice is something a subscription is told besides its messages.
type Notice struct {
	// Kind says what it is about, and which of the other fields it fills.
	Kind NoticeKind
	// Since is, for NoticeLost, the id after which messages were lost, and
	// for NoticeReconnected the id it resumes after.
	Since uint64
	// Count is how many messages were lost (NoticeLost); nil is unknown.
	Count *uint64
	// Resumed says that a NoticeReconnected stream resumes after Since.
	Resumed bool
	// Err is why the stream ended or could not be opened (NoticeRetrying).
	Err error
	// Wait is how long until the next attempt (NoticeRetrying).
	Wait time.Duration
}

// Waits between attempts to open a stream: they double from
// minRetryWait with every failed attempt, up to maxRetryWait, each cut by
// a random part of up to a half, so that subscribers dropped together do
// not come back together.
const (
	minRetryWait = 500 * time.Millisecond
	maxRetryWait = 30 * time.Second
)

// maxEventLine bounds one line of the event stream, far above any
// message size a server would allow, even JSON-escaped.
const maxEventLine = 32 << 20

// ErrStreamEnded is why a stream that the server closed ended.
var ErrStreamEnded = errors.New("the event stream ended (the server stopped, or the connection was cut)")

// ErrNotEventStream is wrapped by Subscribe's error when the URL answers
// with something other than an event stream.
var ErrNotEventStream = errors.New("not Herald's event stream")

// Subscribe follows the event stream at eventsURL and hands each message
// to handle, one at a time, in order, each once. When a stream ends or
// cannot be opened, it tries again with backoff and resumes after the last
// message handed over. It returns nil once ctx ends; an error when the
// server refuses for good (a *Refusal: bad credentials, no such route or
// topic), when the URL is not an event stream, or when handle fails,
// which returns handle's error.
func (c *Client) Subscribe(ctx context.Context, eventsURL *url.URL, sub Subscription, handle func(Message) error) error {
	s := &stream{
		client: c, url: eventsURL, topic: sub.Topic, handle: handle, notify: sub.Notify,
		resume: sub.Resume, since: sub.Since, floor: sub.Since,
	}
	if s.notify == nil {
		s.notify = func(Notice) {}
	}
	failures := 0
	for attempt := 0; ; attempt++ {
		opened, err := s.follow(ctx, attempt > 0)
		if ctx.Err() != nil {
			return nil
		}
		var stop *stopError
		if errors.As(err, &stop) {
			return stop.err
		}
		var refusal *Refusal
		if errors.As(err, &refusal) && refusal.Final() {
			return err
		}
		if opened {
			failures = 0
		}
		wait := retryWait(failures)
		if refusal != nil {
			wait = max(wait, refusal.RetryAfter)
		}
		failures++
		s.notify(Notice{Kind: NoticeRetrying, Err: err, Wait: wait})
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

// retryWait is the wait before the next attempt after failures failed
// ones in a row.
func retryWait(failures int) time.Duration {
	wait := maxRetryWait
	if failures < 16 { // the cap comes long before a shift could overflow
		wait = min(maxRetryWait, minRetryWait<<failures)
	}
	return wait - rand.N(wait/2)
}

// stopError ends Subscribe with err: trying again cannot help.
type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }

// stream is one subscription's position across the streams it opens, and
// its only reader.
type stream struct {
	client *Client
	url    *url.URL
	topic  string
	handle func(Message) error
	notify func(Notice)
	// resume and since are where the next stream starts: after since, or
	// with the next message published.
	resume bool
	since  uint64
	// floor is the highest id handed over; a message at or below it is
	// not handed over again.
	floor uint64
}

// follow opens one stream and hands its messages over until it ends. It
// reports whether the stream opened.
func (s *stream) follow(ctx context.Context, reconnecting bool) (bool, error) {
	u := *s.url
	query := u.Query()
	if s.topic != "" {
		query.Set("topic", s.topic)
	}
	// JSON carries each message's text exactly (the text form turns line
	// breaks into LF) with its topic and time.
	query.Set("format", "json")
	query.Del("presence")
	query.Del("since")
	if s.resume {
		query.Set("since", strconv.FormatUint(s.since, 10))
	}
	u.RawQuery = query.Encode()
	req, err := s.client.newRequest(ctx, http.MethodGet, &u, nil)
	if err != nil {
		return false, &stopError{err}
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := s.client.http.Do(req)
	if err != nil {
		return false, withoutURL(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, ReadRefusal(resp)
	}
	if mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mediaType != "text/event-stream" {
		return false, &stopError{fmt.Errorf("%w: the answer is %q: give the server's address, or its event stream's URL (paths.events)",
			ErrNotEventStream, resp.Header.Get("Content-Type"))}
	}
	if reconnecting {
		s.notify(Notice{Kind: NoticeReconnected, Since: s.since, Resumed: s.resume})
	}
	return true, s.read(resp.Body)
}

// read dispatches the events of one stream until it ends.
func (s *stream) read(body io.Reader) error {
	lines := bufio.NewScanner(body)
	lines.Buffer(make([]byte, 0, 64<<10), maxEventLine)
	var name, id string
	var data []byte
	for lines.Scan() {
		line := bytes.TrimSuffix(lines.Bytes(), []byte("\r"))
		if len(line) == 0 {
			switch {
			case data != nil:
				if err := s.dispatch(name, data); err != nil {
					return err
				}
			case id != "":
				s.startsAfter(id)
			}
			name, id, data = "", "", nil
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "": // a comment: the greeting and heartbeats
		case "event":
			name = string(value)
		case "id":
			id = string(value)
		case "data":
			if data == nil {
				data = make([]byte, 0, len(value)) // an empty data line is still data
			} else {
				data = append(data, '\n')
			}
			data = append(data, value...)
		}
	}
	if err := lines.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return &stopError{fmt.Errorf("%w: a line is over %d MiB", ErrNotEventStream, maxEventLine>>20)}
		}
		return err
	}
	return ErrStreamEnded
}

// startsAfter takes the id of an event without data, which says where the
// stream starts: a stream that ends before its first message resumes from
// there. A position at or below one already resumed after changes nothing.
func (s *stream) startsAfter(id string) {
	position, err := strconv.ParseUint(id, 10, 64)
	if err != nil || (s.resume && position <= s.since) {
		return
	}
	s.since, s.resume = position, true
}

// dispatch acts on one event: a message (no event name) or a notice.
func (s *stream) dispatch(name string, data []byte) error {
	var event struct {
		ID    string  `json:"id"`
		Topic string  `json:"topic"`
		Time  string  `json:"time"`
		Msg   string  `json:"msg"`
		Since string  `json:"since"`
		Count *uint64 `json:"count"`
		State string  `json:"state"`
	}
	if err := json.Unmarshal(data, &event); err != nil {
		return &stopError{fmt.Errorf("%w: an event is not JSON: %.80q", ErrNotEventStream, data)}
	}
	switch name {
	case "", "message":
		return s.deliver(event.ID, event.Topic, event.Time, event.Msg, data)
	case "lost":
		since, _ := strconv.ParseUint(event.Since, 10, 64)
		if event.Count == nil {
			// The server no longer knows where since was: what it sends
			// now is all new, whatever its ids.
			s.floor = 0
		}
		s.notify(Notice{Kind: NoticeLost, Since: since, Count: event.Count})
	case "broker":
		kind := NoticeBrokerDown
		if event.State == "up" {
			kind = NoticeBrokerUp
		}
		s.notify(Notice{Kind: kind})
	case "expired":
		s.notify(Notice{Kind: NoticeExpired})
	}
	return nil
}

// deliver hands one message over, unless it was handed over before, and
// moves the position past it.
func (s *stream) deliver(rawID, topic, rawTime, text string, data []byte) error {
	id, err := strconv.ParseUint(rawID, 10, 64)
	if err != nil {
		return &stopError{fmt.Errorf("%w: a message's id is %q", ErrNotEventStream, rawID)}
	}
	if id <= s.floor {
		return nil
	}
	at, _ := time.Parse(time.RFC3339Nano, rawTime)
	if err := s.handle(Message{ID: id, Topic: topic, Time: at, Text: text, JSON: data}); err != nil {
		return &stopError{err}
	}
	s.resume, s.since, s.floor = true, id, id
	return nil
}
