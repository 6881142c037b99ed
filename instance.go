package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"

	"herald/app"
	"herald/app/config"
	"herald/app/history"
	"herald/app/push"
	"herald/app/redisbroker"
	"herald/handlers"
)

// instance owns one Herald instance's running parts. It builds them in
// order (the history store, the hub, the broker, Web Push, the node, the
// HTTP edge) and stops them in reverse, on every way out: a signal, a
// failed Serve, a broker that gives up. The store closes last, once
// nothing can publish or read any more.
type instance struct {
	logger *slog.Logger
	store  app.Store     // nil without history.file
	broker app.Broker    // memory unless broker: redis
	push   *push.Service // nil unless push.enabled
	node   *app.Node
	edge   *handlers.Server
}

// newInstance builds every part, with the secrets that cfg refers to. On
// failure it closes what it had opened.
func newInstance(cfg config.Config, secrets config.Secrets, logger *slog.Logger) (_ *instance, err error) {
	in := &instance{logger: logger}
	defer func() {
		if err != nil {
			in.closeBackends()
		}
	}()
	var historyFile *history.File
	if cfg.History.File != "" {
		if historyFile, err = history.Open(cfg.History.File); err != nil {
			return nil, err
		}
		if dropped := historyFile.DroppedRecord(); dropped != nil {
			logger.Warn("the history file's journal ended in a record that was not whole, so it was dropped: "+
				"a crash while writing it leaves it so, and then none of its publishes was acknowledged; "+
				"if Herald was not publishing when it stopped, the disk damaged it and its publishes are lost",
				"journal", cfg.History.File+"-journal", "offset", dropped.Offset, "record", dropped.Number)
		}
		in.store = historyFile
	}
	hub, err := app.NewHub(app.HubOptions{
		MaxLagBytes:     cfg.Limits.MaxLagBytes,
		MaxMessageBytes: cfg.Limits.MaxMessageBytes,
		HistorySize:     cfg.History.Size,
		HistoryTTL:      cfg.History.TTL,
		MaxTopics:       cfg.Limits.MaxTopics,
		Store:           in.store,
		CommitDelay:     cfg.History.CommitDelay,
		Logger:          logger,
	})
	if err != nil {
		return nil, err
	}
	if in.broker, err = newBroker(cfg, secrets, hub, logger); err != nil {
		return nil, err
	}
	var listeners []app.PublishListener
	if cfg.Push.Enabled {
		if in.push, err = newPush(cfg, historyFile, in.broker, logger); err != nil {
			return nil, err
		}
		listeners = append(listeners, pushListener{in.push})
	}
	in.node = app.NewNode(hub, in.broker, listeners...)
	templates, err := fs.Sub(assets, "templates")
	if err != nil {
		return nil, fmt.Errorf("embedded templates: %w", err)
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, fmt.Errorf("embedded static files: %w", err)
	}
	in.edge, err = handlers.NewServer(handlers.Options{
		Config: cfg, Node: in.node, Policy: secrets.Policy, AdminToken: secrets.AdminToken,
		Logger: logger, Templates: templates, Static: static, Push: in.push,
	})
	if err != nil {
		return nil, err
	}
	return in, nil
}

// newBroker is the broker that cfg.Broker names, for hub.
func newBroker(cfg config.Config, secrets config.Secrets, hub *app.Hub, logger *slog.Logger) (app.Broker, error) {
	if cfg.Broker != "redis" {
		return app.NewMemoryBroker(hub), nil
	}
	opts := redisOptions(cfg, secrets)
	opts.Logger = logger
	broker, err := redisbroker.New(hub, opts)
	if err != nil {
		return nil, err // not a nil *redisbroker.Broker in an interface, which closeBackends would call
	}
	return broker, nil
}

// newPush builds Web Push over the store that keeps the rest: Redis with
// broker: redis, the history file with one, else memory with
// push.key_file.
func newPush(cfg config.Config, historyFile *history.File, broker app.Broker, logger *slog.Logger) (*push.Service, error) {
	limits := push.Limits{PerTopic: cfg.Limits.MaxPushSubscriptionsPerTopic, Total: cfg.Limits.MaxPushSubscriptions}
	var store push.Store
	switch redisBroker, isRedis := broker.(*redisbroker.Broker); {
	case isRedis:
		store = redisBroker.PushStore(limits)
	case historyFile != nil:
		store = historyFile.PushStore(limits)
	default:
		store = push.NewMemoryStore(cfg.Push.KeyFile, limits)
		if cfg.Push.KeyFile == "" {
			logger.Warn(pushKeyWarning)
		}
	}
	// Reading the key pair is a command with broker: redis.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Redis.Timeout)
	defer cancel()
	service, err := push.New(ctx, push.Options{
		Store: store, Subject: cfg.Push.Subject, Endpoints: cfg.Push.Endpoints,
		Queue: cfg.Push.Queue, Workers: cfg.Push.Workers, TTL: cfg.Push.TTL, Timeout: cfg.Push.Timeout,
		Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	return service, nil
}

// pushKeyWarning is what start-up and check-config say when push has no
// way to keep its key pair across a restart.
const pushKeyWarning = "push.key_file is empty: the push key pair lasts only until Herald stops, and browsers registered for push must subscribe again after every restart; set push.key_file"

// pushKeptIn says where newPush keeps the key pair and the subscriptions,
// as check-config tells it.
func pushKeptIn(cfg config.Config) string {
	switch {
	case cfg.Broker == "redis":
		return "Web Push keeps its key pair and subscriptions in Redis, for every instance."
	case cfg.History.File != "":
		return "Web Push keeps its key pair and subscriptions in the history file " + cfg.History.File + "."
	case cfg.Push.KeyFile != "":
		return "Web Push keeps its key pair in " + cfg.Push.KeyFile + ", and its subscriptions in memory, lost at a restart."
	}
	return pushKeyWarning + "."
}

// pushListener hands Web Push each message this instance acknowledged.
type pushListener struct{ service *push.Service }

// Published queues m to be pushed; it never waits.
func (l pushListener) Published(m *app.Message) {
	l.service.Push(push.Message{Topic: m.Topic, ID: m.ID, Text: m.Text, Time: m.Time})
}

// redisOptions are the Redis broker's options that cfg sets, with the
// passwords that secrets holds.
func redisOptions(cfg config.Config, secrets config.Secrets) redisbroker.Options {
	r := cfg.Redis
	return redisbroker.Options{
		URL: r.URL, Addrs: r.Addrs, MasterName: r.MasterName,
		Username: r.Username, Password: secrets.RedisPassword,
		SentinelUsername: r.SentinelUsername, SentinelPassword: secrets.RedisSentinelPassword,
		TLS: r.TLS, TLSCAFile: r.TLSCAFile, MinReplicas: r.MinReplicas,
		Prefix: r.Prefix, Timeout: r.Timeout,
		HistorySize: cfg.History.Size, HistoryTTL: cfg.History.TTL,
	}
}

// serve serves on listener until ctx ends, serving fails or the broker
// stops for good, then stops every part, and returns why it stopped when
// that was not ctx.
func (in *instance) serve(ctx context.Context, listener net.Listener) error {
	serving, stopServing := context.WithCancel(ctx)
	defer stopServing()
	served := make(chan error, 1)
	go func() { served <- in.edge.Serve(serving, listener) }()
	// The node's background work stops only once the edge has: subscribers
	// draining at shutdown still get what other instances published.
	background, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	ran := make(chan error, 1)
	go func() { ran <- in.node.Run(background) }()
	// Pushing stops with the node: what the edge acknowledged until it
	// stopped has been queued by then.
	pushed := make(chan error, 1)
	if in.push != nil {
		go func() { pushed <- in.push.Run(background) }()
	} else {
		pushed <- nil
	}

	var reason, stopErr error
	select {
	case stopErr = <-served: // serving failed, and the edge has stopped
	case reason = <-ran: // the broker gave up
		ran <- reason
		stopServing()
		stopErr = <-served
	case <-ctx.Done():
		stopErr = <-served
	}
	stopBackground()
	if err := <-ran; err != nil && reason == nil {
		stopErr = errors.Join(stopErr, err)
	}
	stopErr = errors.Join(stopErr, <-pushed)
	in.closeBackends()
	return errors.Join(reason, stopErr)
}

// close stops an instance that will never serve.
func (in *instance) close() {
	in.edge.Close()
	in.closeBackends()
}

// closeBackends closes the broker, then the store, whichever were opened.
// The edge has stopped, or never started.
func (in *instance) closeBackends() {
	if in.broker != nil {
		if err := in.broker.Close(); err != nil {
			in.logger.Error("close broker", "err", err)
		}
		in.broker = nil
	}
	if in.store != nil {
		if err := in.store.Close(); err != nil {
			in.logger.Error("close history file", "err", err)
		}
		in.store = nil
	}
}
