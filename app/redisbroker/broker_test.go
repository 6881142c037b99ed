package redisbroker

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"herald/app"
	"herald/app/apptest"
	"herald/app/redistest"
)

// hangGuard bounds how long a test waits for an event that never comes. It
// is not an assertion about speed: waits end on the event itself.
const hangGuard = time.Minute

// newRedisTestBroker connects a broker for hub to r, without running it.
func newRedisTestBroker(t *testing.T, hub *app.Hub, r *redistest.Server) *Broker {
	t.Helper()
	return newTestBroker(t, hub, Options{URL: r.URL()})
}

// newTestBroker connects a broker for hub with opts, and the test's
// prefix, timeout and history, without running it.
func newTestBroker(t *testing.T, hub *app.Hub, opts Options) *Broker {
	t.Helper()
	opts.Prefix, opts.Timeout, opts.HistoryTTL = "herald:", 2*time.Second, time.Hour
	if opts.HistorySize == 0 {
		opts.HistorySize = 16
	}
	b, err := New(hub, opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startTestBroker connects a broker for a new hub with opts, and runs it
// until the test ends.
func startTestBroker(t *testing.T, opts Options) *Broker {
	t.Helper()
	b := newTestBroker(t, apptest.NewHub(t, app.HubOptions{}), opts)
	runBroker(t, b)
	return b
}

// runBroker runs b until the test ends, then closes it.
func runBroker(t *testing.T, b *Broker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("broker run: %v", err)
		}
		b.Close()
	})
}

// subscribeVia subscribes to topic through b.
func subscribeVia(t *testing.T, b *Broker, topic string) *app.Subscriber {
	t.Helper()
	s, err := b.Subscribe(context.Background(), app.SubscribeRequest{Topic: topic, Label: t.Name()})
	if err != nil {
		t.Fatalf("subscribe to %s: %v", topic, err)
	}
	return s
}

// publishVia publishes text to topic through b and fails unless it is
// acknowledged.
func publishVia(t *testing.T, b *Broker, topic, text string) *app.Message {
	t.Helper()
	m, _, err := b.Publish(context.Background(), topic, text)
	if err != nil {
		t.Fatalf("publish %q to %s: %v", text, topic, err)
	}
	return m
}

// awaitMessages waits until s has n messages to take, and takes them.
func awaitMessages(t *testing.T, s *app.Subscriber, n int) []*app.Message {
	t.Helper()
	var got []*app.Message
	for len(got) < n {
		select {
		case <-s.Ready():
		case <-time.After(hangGuard):
			t.Fatalf("subscriber to %s has %d messages, want %d", s.Topic(), len(got), n)
		}
		got = append(got, apptest.TakeAll(s)...)
	}
	if len(got) != n {
		t.Fatalf("subscriber to %s has %d messages, want %d", s.Topic(), len(got), n)
	}
	return got
}

// awaitText waits until s has a message whose text is text, and returns
// every message it took, that one last.
func awaitText(t *testing.T, s *app.Subscriber, text string) []*app.Message {
	t.Helper()
	var got []*app.Message
	for len(got) == 0 || got[len(got)-1].Text != text {
		if len(got) > 0 && slices.ContainsFunc(got, func(m *app.Message) bool { return m.Text == text }) {
			break
		}
		select {
		case <-s.Ready():
		case <-time.After(hangGuard):
			t.Fatalf("subscriber to %s never got %q; it got %s", s.Topic(), text, texts(got))
		}
		got = append(got, apptest.TakeAll(s)...)
	}
	return got
}

// texts lists messages as "id text" for failures.
func texts(messages []*app.Message) string {
	var b strings.Builder
	for _, m := range messages {
		fmt.Fprintf(&b, "[%d %q] ", m.ID, m.Text)
	}
	return b.String()
}

// A message published after the broker started and before its Run read
// the channel reaches a subscriber: the broker listens from the start.
func TestMessagePublishedAsTheBrokerStartsReachesSubscribers(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	b := newRedisTestBroker(t, apptest.NewHub(t, app.HubOptions{}), r)
	s := subscribeVia(t, b, "early")
	sent := publishVia(t, b, "early", "first")
	runBroker(t, b)
	if got := awaitMessages(t, s, 1); got[0].ID != sent.ID || got[0].Text != "first" {
		t.Fatalf("got %d %q, want %d first", got[0].ID, got[0].Text, sent.ID)
	}
}

// A subscriber that joins just as the topic's last subscriber leaves, and
// everyone who joins after it, get the topic's next message: the hub
// decides whether it holds the topic under the lock that forgets it.
func TestJoinRacingTheLastLeaveGetsTheNextMessage(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	hub := apptest.NewHub(t, app.HubOptions{})
	b := newRedisTestBroker(t, hub, r)
	runBroker(t, b)

	marker := subscribeVia(t, b, "marker")
	leaving := subscribeVia(t, b, "race")
	var once sync.Once
	b.joinHook = func() {
		once.Do(func() { // the last subscriber leaves as the next one joins
			leaving.Leave()
			leaving.Close()
		})
	}
	joiner := subscribeVia(t, b, "race")
	b.joinHook = nil
	later := subscribeVia(t, b, "race")

	sent := publishVia(t, b, "race", "next")
	publishVia(t, b, "marker", "after next")
	// The broker hands the channel's messages to the hub one at a time, in
	// order: once the marker is in, "next" has been handed over.
	awaitMessages(t, marker, 1)
	for name, s := range map[string]*app.Subscriber{"the joiner": joiner, "a later joiner": later} {
		got := apptest.TakeAll(s)
		if len(got) != 1 || got[0].ID != sent.ID || got[0].Text != "next" {
			t.Errorf("%s got %d messages, want %d next", name, len(got), sent.ID)
		}
		if s.Gap() != nil {
			t.Errorf("%s was told of a gap: %+v", name, s.Gap())
		}
	}
}

// A subscriber that gives an instance its first subscriber to a topic
// learns of the topic's subscribers on the other instances at once, not
// at the next restatement of the counts, which this test never reaches.
func TestFirstSubscriberOnAnInstanceCountsTheOthersAtOnce(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	a, b := newRedisTestBroker(t, apptest.NewHub(t, app.HubOptions{}), r), newRedisTestBroker(t, apptest.NewHub(t, app.HubOptions{}), r)
	a.presence.refresh, b.presence.refresh = time.Hour, time.Hour
	runBroker(t, a)
	runBroker(t, b)
	announcements := r.Client(t).Subscribe(context.Background(), "herald:presence")
	t.Cleanup(func() { announcements.Close() })
	if _, err := announcements.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	subscribeVia(t, b, "room")
	subscribeVia(t, b, "room")
	// B has told of its subscribers before A holds the topic: A, with no
	// subscriber to it then, does not read B's count when it hears.
	for written := 0; written < 2; {
		if _, err := announcements.ReceiveMessage(context.Background()); err != nil {
			t.Fatal(err)
		}
		counts, err := r.Client(t).HGetAll(context.Background(), "herald:topic:room:presence").Result()
		if err != nil {
			t.Fatal(err)
		}
		if count, ok := counts[b.presence.instance]; ok {
			written, _ = strconv.Atoi(strings.Split(count, ":")[0])
		}
	}
	watcher, err := a.Subscribe(context.Background(), app.SubscribeRequest{Topic: "room", Label: t.Name(), Presence: true})
	if err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case <-watcher.Ready():
		case <-time.After(hangGuard):
			t.Fatal("the watcher was never told of the two subscribers on the other instance")
		}
		apptest.TakeAll(watcher)
		if watcher.TopicSubscribers() == 3 {
			return
		}
	}
}

// TestSubscriptionsComeBackAsSoonAsRedisDoes: after Redis fails, the
// channel's reader waits before it tries again, longer each time. News
// that Redis answers again must end that wait, or what is published once
// Redis is back reaches subscribers only when the reader's backoff runs
// out: here, never.
func TestSubscriptionsComeBackAsSoonAsRedisDoes(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	publisher := startTestBroker(t, Options{URL: r.URL()})
	subscriberSide := newTestBroker(t, apptest.NewHub(t, app.HubOptions{}), Options{URL: r.URL()})
	subscriberSide.retryFirst, subscriberSide.retryMax = time.Hour, time.Hour
	runBroker(t, subscriberSide)
	s := subscribeVia(t, subscriberSide, "news")
	publishVia(t, publisher, "news", "before")
	awaitText(t, s, "before")

	r.Kill(t)
	r.Restart(t)
	publishVia(t, publisher, "news", "after")
	if got := awaitText(t, s, "after"); got[len(got)-1].Text != "after" {
		t.Errorf("the subscriber got %s, want after last", texts(got))
	}
}
