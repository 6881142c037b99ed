package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"time"

	"herald/app"
	"herald/handlers"
	"herald/handlers/upgrade"
)

// server owns Herald's running parts. It builds them in order (the history
// store, the broker, the hub, the routes) and stops them in reverse, on
// every way out: a signal, a failed Serve, a broker that gives up. The
// store closes last, once nothing can publish or read any more.
type server struct {
	cfg    app.Config
	logger *slog.Logger
	store  app.Store  // nil without history.file
	broker app.Broker // memory unless broker: redis
	hub    *app.Hub
	http   *http.Server
	// upgrades serves WebSocket upgrades ahead of net/http; nil with TLS,
	// where net/http serves them too.
	upgrades *upgrade.Listener
}

// newServer builds every part. On failure it closes what it had opened.
func newServer(cfg app.Config, logger *slog.Logger, getenv func(string) string) (_ *server, err error) {
	s := &server{cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			s.closeBackends()
		}
	}()
	if cfg.History.File != "" {
		store, err := app.OpenHistoryFile(cfg.History.File)
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
	e, err := handlers.New(handlers.Options{
		Config: cfg, Hub: s.hub, Broker: s.broker, Logger: logger, Templates: templates, Static: static, Getenv: getenv,
	})
	if err != nil {
		return nil, err
	}
	var tlsConfig *tls.Config
	if cfg.TLS.Cert != "" {
		pair, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("tls: load %s and %s: %w", cfg.TLS.Cert, cfg.TLS.Key, err)
		}
		// HTTP/1.1 only: WebSocket upgrades need it, and x/net/websocket
		// has no HTTP/2 support.
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	}
	s.http = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		TLSConfig:         tlsConfig,
		ConnContext:       handlers.ConnContext,
	}
	return s, nil
}

// serve serves on listener until ctx ends, Serve fails or the broker stops
// for good, then stops every part, and returns why it stopped when that
// was not ctx.
func (s *server) serve(ctx context.Context, listener net.Listener) error {
	if s.http.TLSConfig != nil {
		// So that shutdown can stop waiting on full sockets beneath TLS.
		listener = upgrade.StopWaitingListener(listener)
	} else {
		s.upgrades = upgrade.NewListener(listener, upgrade.Config{
			Handler:           s.http.Handler,
			Paths:             []string{s.cfg.Paths.WS},
			ReadHeaderTimeout: s.http.ReadHeaderTimeout,
			WriteTimeout:      s.http.WriteTimeout,
			Logger:            s.logger,
		})
		listener = s.upgrades
	}
	served := make(chan error, 1)
	go func() {
		if s.http.TLSConfig != nil {
			served <- s.http.ServeTLS(listener, "", "")
			return
		}
		served <- s.http.Serve(listener)
	}()
	background, stopBackground := context.WithCancel(ctx)
	brokerDone := make(chan error, 1)
	go func() { brokerDone <- s.broker.Run(background) }()
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		sweepPeriodically(background, s.hub, sweepInterval(s.cfg.History.TTL), s.logger)
	}()

	var reason error
	select {
	case err := <-served:
		reason = fmt.Errorf("serve: %w", err)
		served <- err // shutdown waits on it
	case err := <-brokerDone:
		reason = fmt.Errorf("broker: %w", err)
		brokerDone <- err
	case <-ctx.Done():
	}
	stopErr := s.shutdown(ctx, served)
	stopBackground()
	<-swept
	if err := <-brokerDone; err != nil && reason == nil && !errors.Is(err, context.Canceled) {
		stopErr = errors.Join(stopErr, fmt.Errorf("broker: %w", err))
	}
	s.closeBackends()
	return errors.Join(reason, stopErr)
}

// shutdown stops accepting, and meanwhile ends every subscription:
// net/http waits for event streams, which end only when the hub closes
// them, and does not track hijacked WebSockets at all. Each subscriber gets
// what was published to it and not yet sent, then a 1001 close or the end
// of its stream. A publish still in flight either reaches the log before
// the hub closes or is refused with 503.
func (s *server) shutdown(ctx context.Context, served <-chan error) error {
	grace := s.cfg.ShutdownGrace
	s.logger.Info("shutting down", "grace", grace)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	httpDone := make(chan error, 1)
	go func() { httpDone <- s.http.Shutdown(shutdownCtx) }()
	hubErr := s.hub.Shutdown(shutdownCtx)
	httpErr := <-httpDone
	<-served
	if s.upgrades != nil {
		s.upgrades.Wait() // upgrades half done when the listener closed
	}
	if err := errors.Join(httpErr, hubErr); err != nil {
		s.http.Close()
		return fmt.Errorf("shutdown after %s: %w", grace, err)
	}
	return nil
}

// closeBackends closes the broker, then the store, whichever were opened.
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
func newBroker(cfg app.Config, hub *app.Hub, logger *slog.Logger) (app.Broker, error) {
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
