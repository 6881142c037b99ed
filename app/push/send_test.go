package push

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald/app/push/pushtest"
)

// lockedLog collects a service's log lines from its workers.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const testSubject = "https://herald.example/contact"

// newTestService builds a service that may push to fake, with one worker.
func newTestService(t *testing.T, fake *pushtest.Service, queue int) (*Service, *lockedLog) {
	t.Helper()
	log := &lockedLog{}
	s, err := New(context.Background(), Options{
		Store: NewMemoryStore("", Limits{PerTopic: 10, Total: 10}), Subject: testSubject,
		Endpoints: []string{fake.URL + "/"}, Queue: queue, Workers: 1, TTL: time.Minute, Timeout: time.Hour,
		Logger: slog.New(slog.NewTextHandler(log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	fake.Expect(testSubject, s.PublicKey())
	return s, log
}

// run runs s until the test ends, or until the returned func is called.
func run(t *testing.T, s *Service) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func register(t *testing.T, s *Service, fake *pushtest.Service, topic string) *pushtest.Subscription {
	t.Helper()
	browser := fake.Subscribe(t)
	sub, err := ParseSubscription(topic, []byte(browser.JSON()))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Register(context.Background(), sub); err != nil {
		t.Fatal(err)
	}
	return browser
}

// next waits for the next push, and fails the test unless it decrypted
// and verified.
func next(t *testing.T, fake *pushtest.Service) pushtest.Push {
	t.Helper()
	p := fake.Next(t)
	if p.Err != nil {
		t.Fatalf("push: %v", p.Err)
	}
	return p
}

// A push service's 429 and 5xx are tried again, as soon as its
// Retry-After allows; after the last try, the push is counted as failed
// and logged. Other refusals are not tried again.
func TestPushesAreRetriedAsThePushServiceAsks(t *testing.T) {
	t.Parallel()
	fake := pushtest.Start(t)
	s, log := newTestService(t, fake, 10)
	s.firstBackoff = time.Millisecond // for answers without Retry-After
	run(t, s)
	busy := register(t, s, fake, "busy")
	fake.Answer(busy,
		pushtest.Answer{Status: http.StatusServiceUnavailable, RetryAfter: "0"},
		pushtest.Answer{Status: http.StatusTooManyRequests})
	down := register(t, s, fake, "down")
	fake.Answer(down, pushtest.Answer{Status: 500}, pushtest.Answer{Status: 502}, pushtest.Answer{Status: 503, RetryAfter: "0"})
	patient := register(t, s, fake, "patient")
	fake.Answer(patient, pushtest.Answer{Status: http.StatusTooManyRequests, RetryAfter: "3600"})
	refused := register(t, s, fake, "refused")
	fake.Answer(refused, pushtest.Answer{Status: http.StatusBadRequest})
	last := register(t, s, fake, "last")
	fake.Answer(last, pushtest.Answer{Hang: true}) // holds the worker while the test looks

	for _, topic := range []string{"busy", "down", "patient", "refused", "last"} {
		s.Push(Message{Topic: topic, ID: 1, Text: topic, Time: time.Now()})
	}
	tries := map[string]int{}
	for tries[last.ID] == 0 {
		tries[next(t, fake).Subscription]++
	}
	for _, tc := range []struct {
		name  string
		sub   *pushtest.Subscription
		tries int
	}{{"busy", busy, 3}, {"down", down, 3}, {"patient", patient, 1}, {"refused", refused, 1}} {
		if tries[tc.sub.ID] != tc.tries {
			t.Errorf("%s was tried %d times, want %d", tc.name, tries[tc.sub.ID], tc.tries)
		}
	}
	// The one worker counted everything before it took the last message.
	if stats := s.Stats(); stats.Failed != 3 || stats.Sent != 1 {
		t.Errorf("stats %+v, want 3 failed and busy sent", stats)
	}
	for _, want := range []string{"topic=down", "status=503 attempts=3", "topic=patient", "retry_after=3600", "topic=refused", "status=400"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, log)
		}
	}
}

// What waits in the queue when the service stops is counted and logged as
// dropped, as is what comes after.
func TestStoppingDropsWhatIsQueuedAndSaysSo(t *testing.T) {
	t.Parallel()
	fake := pushtest.Start(t)
	s, log := newTestService(t, fake, 10)
	stop := run(t, s)
	register(t, s, fake, "news")
	fake.Hang()
	s.Push(Message{Topic: "news", ID: 1, Text: "taken", Time: time.Now()})
	next(t, fake)
	s.Push(Message{Topic: "news", ID: 2, Text: "queued", Time: time.Now()})
	s.Push(Message{Topic: "news", ID: 3, Text: "queued", Time: time.Now()})
	stop()
	s.Push(Message{Topic: "news", ID: 4, Text: "too late", Time: time.Now()})
	if stats := s.Stats(); stats.Dropped != 3 || stats.Failed != 1 || stats.QueueDepth != 0 {
		t.Errorf("stats %+v, want 3 dropped and the one in flight failed", stats)
	}
	for _, want := range []string{"the server stopped before they were sent", "messages=2", "push not sent: the server stopped", "the server is stopping"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, log)
		}
	}
}

func TestRetryAfterIsReadAsSecondsOrADate(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		given  string
		expect time.Duration
		ok     bool
	}{
		{"0", 0, true},
		{"120", 2 * time.Minute, true},
		{"Mon, 07 Dec 2026 18:00:30 GMT", 30 * time.Second, true},
		{"Mon, 07 Dec 2026 17:00:00 GMT", 0, true},
		{"", 0, false},
		{"-1", 0, false},
		{"soon", 0, false},
	} {
		if got, ok := parseRetryAfter(tc.given, now); got != tc.expect || ok != tc.ok {
			t.Errorf("%q: %v %v, want %v %v", tc.given, got, ok, tc.expect, tc.ok)
		}
	}
}

// A push service's redirect is not followed: an answer cannot send Herald
// to an address that is not an allowed push service.
func TestRedirectsAreNotFollowed(t *testing.T) {
	t.Parallel()
	var reached atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
	defer elsewhere.Close()
	fake := pushtest.Start(t)
	s, log := newTestService(t, fake, 10)
	run(t, s)
	redirecting := register(t, s, fake, "news")
	for _, status := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound} {
		fake.Answer(redirecting, pushtest.Answer{Status: status, Location: elsewhere.URL + "/internal"})
	}
	last := register(t, s, fake, "last")
	fake.Answer(last, pushtest.Answer{Hang: true})
	for range 3 {
		s.Push(Message{Topic: "news", ID: 1, Text: "x", Time: time.Now()})
	}
	s.Push(Message{Topic: "last", ID: 1, Text: "x", Time: time.Now()})
	for next(t, fake).Subscription != last.ID {
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("a redirect was followed %d times", n)
	}
	if stats := s.Stats(); stats.Failed != 3 {
		t.Errorf("stats %+v, want the 3 redirected pushes failed", stats)
	}
	if !strings.Contains(log.String(), "status=307") {
		t.Errorf("the refusal was not logged with its status:\n%s", log)
	}
}
