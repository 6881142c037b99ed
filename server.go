package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"time"

	"herald/app"
	"herald/app/config"
	"herald/app/history"
	"herald/handlers"
)

// server owns Herald's running parts. It builds them in order (the history
// store, the hub, the broker, the HTTP edge) and stops them in reverse, on
// every way out: a signal, a failed Serve, a broker that gives up. The
// store closes last, once nothing can publish or read any more.
type server struct {
	cfg    config.Config
	logger *slog.Logger
	store  app.Store  // nil without history.file
	broker app.Broker // memory unless broker: redis
	hub    *app.Hub
	edge   *handlers.Server
}

// newServer builds every part. On failure it closes what it had opened.
func newServer(cfg config.Config, logger *slog.Logger, getenv func(string) string) (_ *server, err error) {
	s := &server{cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			s.closeBackends()
		}
	}()
	if cfg.History.File != "" {
		store, err := history.Open(cfg.History.File)
		if err != nil {
			return nil, err
		}
		s.store = store
	}
	// A shared broker counts every instance's subscribers; it exists only
	// once the hub does, and is set before anyone can subscribe.
	var subscriberCount func(topic string, local int)
	s.hub, err = app.NewHub(app.HubOptions{
		MaxLagBytes:     cfg.Limits.MaxLagBytes,
		MaxMessageBytes: cfg.Limits.MaxMessageBytes,
		HistorySize:     cfg.History.Size,
		HistoryTTL:      cfg.History.TTL,
		MaxTopics:       cfg.Limits.MaxTopics,
		Store:           s.store,
		CommitDelay:     cfg.History.CommitDelay,
		Logger:          logger,
		OnSubscriberCount: func(topic string, local int) {
			if subscriberCount != nil {
				subscriberCount(topic, local)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	if s.broker, err = newBroker(cfg, s.hub, logger); err != nil {
		return nil, err
	}
	if counter, ok := s.broker.(interface{ SubscriberCount(string, int) }); ok {
		subscriberCount = counter.SubscriberCount
	}
	templates, err := fs.Sub(assets, "templates")
	if err != nil {
		return nil, fmt.Errorf("embedded templates: %w", err)
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, fmt.Errorf("embedded static files: %w", err)
	}
	s.edge, err = handlers.NewServer(handlers.Options{
		Config: cfg, Hub: s.hub, Broker: s.broker, Logger: logger, Templates: templates, Static: static, Getenv: getenv,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// serve serves on listener until ctx ends, Serve fails or the broker stops
// for good, then stops every part, and returns why it stopped when that
// was not ctx.
func (s *server) serve(ctx context.Context, listener net.Listener) error {
	serving, stopServing := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- s.edge.Serve(serving, listener) }()
	background, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	brokerDone := make(chan error, 1)
	go func() { brokerDone <- s.broker.Run(background) }()
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		sweepPeriodically(background, s.hub, sweepInterval(s.cfg.History.TTL), s.logger)
	}()

	var reason, stopErr error
	select {
	case stopErr = <-served: // serving failed, and the edge has stopped
	case err := <-brokerDone:
		reason = fmt.Errorf("broker: %w", err)
		brokerDone <- err
		stopServing()
		stopErr = <-served
	case <-ctx.Done():
		stopErr = <-served
	}
	stopServing()
	// The broker and the sweeper stop only once the edge has: subscribers
	// draining at shutdown still get what other instances published.
	stopBackground()
	<-swept
	if err := <-brokerDone; err != nil && reason == nil && !errors.Is(err, context.Canceled) {
		stopErr = errors.Join(stopErr, fmt.Errorf("broker: %w", err))
	}
	s.closeBackends()
	return errors.Join(reason, stopErr)
}

// close stops a server that will never serve.
func (s *server) close() {
	s.edge.Close()
	s.closeBackends()
}

// closeBackends closes the broker, then the store, whichever were opened.
// The edge has stopped, or never started.
func (s *server) closeBackends() {
	if s.broker != nil {
		if err := s.broker.Close(); err != nil {
			s.logger.Error("close broker", "err", err)
		}
		s.broker = nil
	}
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			s.logger.Error("close history file", "err", err)
		}
		s.store = nil
	}
}

// newBroker is the broker that cfg.Broker names.
func newBroker(cfg config.Config, hub *app.Hub, logger *slog.Logger) (app.Broker, error) {
	if cfg.Broker != "redis" {
		return app.NewMemoryBroker(hub), nil
	}
	broker, err := app.NewRedisBroker(hub, app.RedisOptions{
		URL:         cfg.Redis.URL,
		Prefix:      cfg.Redis.Prefix,
		Timeout:     cfg.Redis.Timeout,
		HistorySize: cfg.History.Size,
		HistoryTTL:  cfg.History.TTL,
		Logger:      logger,
	})
	if err != nil {
		return nil, err // not a nil *RedisBroker in an interface, which closeBackends would call
	}
	return broker, nil
}

// sweepInterval is how often expired history is forgotten: often enough
// that memory follows history.ttl closely, rarely enough to cost nothing.
func sweepInterval(ttl time.Duration) time.Duration {
	return min(max(ttl/10, time.Second), time.Minute)
}

// sweepPeriodically calls hub.Sweep until ctx ends.
func sweepPeriodically(ctx context.Context, hub *app.Hub, interval time.Duration, logger *slog.Logger) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			if err := hub.Sweep(); err != nil {
				logger.Error("history sweep failed", "err", err)
			}
		}
	}
}
