// Package push is Web Push for Herald (RFC 8030, 8291 and 8292): a
// browser registers its push subscription to a topic, and each message
// published to the topic is pushed to it through its push service,
// encrypted for that browser alone and signed with the server's VAPID key,
// so that it arrives with the page closed.
//
// Push is best effort. A message is pushed once its publish is
// acknowledged, by the instance that accepted it (so once, however many
// instances share the topic), from a bounded queue that a small pool of
// workers empties: pushing never slows a publish. A message that finds the
// queue full, or is still queued when the server stops, is counted and
// logged, and not pushed; one queued when the server crashes is lost.
//
// The package imports no other Herald package, so that the stores in
// app/history and app/redisbroker can implement its Store.
package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Options configures a Service. Config validation has checked every
// value.
type Options struct {
	// Store keeps the key pair and the subscriptions.
	Store Store
	// Subject is the contact, mailto: or https:, that push services see
	// in every VAPID claim.
	Subject string
	// Endpoints is the allow-list of push services; see Endpoints.
	Endpoints []string
	// Queue bounds the messages waiting to be pushed, and Workers is how
	// many are pushed at once.
	Queue, Workers int
	// TTL is how long a push service keeps a push for a browser that is
	// offline.
	TTL time.Duration
	// Timeout bounds each request to a push service.
	Timeout time.Duration
	Logger  *slog.Logger
}

// Service is Web Push for one instance: registering subscriptions, and
// pushing the messages it is given. New builds it; Run pushes until its
// context ends.
type Service struct {
	store      Store
	keys       KeyPair
	endpoints  Endpoints
	subscriber string // the subject as webpush-go takes it
	ttlSeconds int
	timeout    time.Duration
	workers    int
	log        *slog.Logger

	queue     chan Message
	stopped   atomic.Bool // Run has returned: nothing takes from the queue
	transport *http.Transport
	client    *http.Client
	// firstBackoff is the wait before a push's second try when the push
	// service does not say how long to wait; tests shorten it.
	firstBackoff time.Duration

	sent, failed, removed, dropped atomic.Uint64
}

// New builds the service, and reads its key pair from the store, which
// keeps a fresh one when it has none.
func New(ctx context.Context, opts Options) (*Service, error) {
	endpoints, err := ParseEndpoints(opts.Endpoints)
	if err != nil {
		return nil, err
	}
	if problem := CheckSubject(opts.Subject); problem != "" {
		return nil, fmt.Errorf("push subject %q %s", opts.Subject, problem)
	}
	if opts.Queue < 1 || opts.Workers < 1 || opts.Timeout <= 0 || opts.TTL < 0 {
		return nil, errors.New("queue, workers and timeout must be above 0, and the TTL 0 or more")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fresh, err := NewKeyPair()
	if err != nil {
		return nil, err
	}
	keys, err := opts.Store.Keys(ctx, fresh)
	if err != nil {
		return nil, fmt.Errorf("the key pair: %w", err)
	}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: opts.Timeout}).DialContext,
		TLSHandshakeTimeout: opts.Timeout,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: opts.Workers,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Service{
		store:      opts.Store,
		keys:       keys,
		endpoints:  endpoints,
		subscriber: webpushSubscriber(opts.Subject),
		ttlSeconds: int(opts.TTL / time.Second),
		timeout:    opts.Timeout,
		workers:    opts.Workers,
		log:        log,
		queue:      make(chan Message, opts.Queue),
		transport:  transport,
		client: &http.Client{
			Transport: transport,
			// A push service answers; it never redirects. Following one
			// would let a push service's answer send Herald elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		firstBackoff: defaultFirstBackoff,
	}, nil
}

// CheckSubject explains what is wrong with a VAPID subject, or returns "":
// push services want a way to reach the server's operator, a mailto:
// address or an https: URL (RFC 8292, section 2.1).
func CheckSubject(subject string) string {
	if address, ok := strings.CutPrefix(subject, "mailto:"); ok {
		if local, domain, found := strings.Cut(address, "@"); !found || local == "" || domain == "" || strings.ContainsAny(address, " <>") {
			return "must be mailto: and an e-mail address, such as mailto:ops@example.com"
		}
		return ""
	}
	u, err := url.Parse(subject)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "must be a mailto: address or an https: URL where push services can reach you, such as mailto:ops@example.com"
	}
	return ""
}

// webpushSubscriber is a subject as webpush-go v1.4.0 takes it: it puts
// "mailto:" before anything that does not start with "https:", so a
// mailto: subject goes without its own.
func webpushSubscriber(subject string) string {
	return strings.TrimPrefix(subject, "mailto:")
}

// PublicKey is the VAPID public key, which a page gives the browser's
// PushManager.subscribe as its applicationServerKey.
func (s *Service) PublicKey() string { return s.keys.Public() }

// Register stores sub, if its endpoint is at an allowed push service and
// there is room; registering one again replaces its keys.
func (s *Service) Register(ctx context.Context, sub Subscription) error {
	if err := s.endpoints.Check(sub.Endpoint); err != nil {
		return err
	}
	err := s.store.Add(ctx, sub)
	if err != nil && !errors.Is(err, ErrTopicFull) && !errors.Is(err, ErrFull) {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	return err
}

// Unregister forgets the subscription to topic with endpoint, if there is
// one.
func (s *Service) Unregister(ctx context.Context, topic, endpoint string) error {
	if err := s.store.Remove(ctx, topic, endpoint); err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	return nil
}

// Push queues m to be pushed to its topic's subscriptions, without ever
// waiting: when the queue is full, m is counted and logged as dropped.
// It is safe to call from any goroutine, and costs a publish next to
// nothing.
func (s *Service) Push(m Message) {
	if s.stopped.Load() {
		s.drop(m, "the server is stopping")
		return
	}
	select {
	case s.queue <- m:
	default:
		s.drop(m, "the push queue is full (push.queue)")
	}
}

func (s *Service) drop(m Message, why string) {
	s.dropped.Add(1)
	s.log.Warn("push dropped: "+why, "topic", m.Topic, "id", m.ID)
}

// Stats is a snapshot of what the service did.
type Stats struct {
	// Sent, Failed and Removed count pushes, one per subscription:
	// taken by a push service, given up on, and refused as gone (their
	// subscription was removed).
	Sent, Failed, Removed uint64
	// Dropped counts messages that were not pushed at all: the queue was
	// full, the server stopped first, or their subscriptions could not be
	// read.
	Dropped uint64
	// QueueDepth is how many messages wait to be pushed.
	QueueDepth int
}

// Stats returns a snapshot of what the service did.
func (s *Service) Stats() Stats {
	return Stats{
		Sent: s.sent.Load(), Failed: s.failed.Load(), Removed: s.removed.Load(), Dropped: s.dropped.Load(),
		QueueDepth: len(s.queue),
	}
}

// Subscriptions is how many subscriptions the store holds, to every topic.
func (s *Service) Subscriptions(ctx context.Context) (int, error) { return s.store.Count(ctx) }
