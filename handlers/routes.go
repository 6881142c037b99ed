// Package handlers is Herald's HTTP edge, with Echo: the page and its web
// app manifest, the notify route, the WebSocket and Server-Sent Events
// routes, access, Web Push registration, health, metrics and static files,
// and the server that runs them. Every route is listed in newServer, in
// this file.
package handlers

import (
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"herald/app"
	"herald/app/access"
	"herald/app/config"
	"herald/app/push"
	"herald/handlers/ws"
)

// Options is everything the server needs; main builds it once.
type Options struct {
	// Config has been loaded and validated (config.Load).
	Config config.Config
	// Node is the domain: every publish and subscription goes through it.
	Node   *app.Node
	Logger *slog.Logger
	// Templates holds the page templates (*.html) at its root.
	Templates fs.FS
	// Static holds the files served under paths.static, at its root.
	Static fs.FS
	// Policy decides who may read and write which topics; main builds it
	// with the secrets it read (config.Config.ReadSecrets).
	Policy *access.Policy
	// AdminToken is security.admin_token's secret, read; "" leaves the
	// operator's routes open.
	AdminToken string
	// Now is the clock that credentials expire by, the policy's; nil is
	// time.Now.
	Now func() time.Time
	// Push is Web Push; nil when push.enabled is false.
	Push *push.Service
}

// newServer builds the routes and the WebSocket engine.
func newServer(opts Options) (*Server, error) {
	if opts.Node == nil || opts.Policy == nil || opts.Templates == nil || opts.Static == nil {
		return nil, errors.New("handlers: node, access policy, templates and static files are required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	templates, err := template.ParseFS(opts.Templates, "*.html")
	if err != nil {
		return nil, fmt.Errorf("parse templates: %w", err)
	}

	cfg := opts.Config
	paths := cfg.Paths
	node := opts.Node
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.Renderer = &echo.TemplateRenderer{Template: templates}
	e.HTTPErrorHandler = newErrorHandler(log, paths)
	// Forwarding headers count only from trusted proxies.
	e.IPExtractor = clientAddress(cfg.Security.TrustedProxies)
	hosts := newHostPolicy(cfg.Security.AllowedHosts, cfg.Host)
	e.Use(withScope, recoverer(log), requestLogger(log), secureHeaders(cfg.TLS.Cert != ""), closeAfterLongHead, hosts.middleware)

	metrics := newMetrics(node)
	if opts.Push != nil {
		metrics.watchPush(opts.Push, log)
	}
	health := &healthHandler{node: node, history: cfg.HistoryKind()}
	page := &pageHandler{paths: paths, tokensAccepted: opts.Policy.TakesCredentials()}
	auth := &authorizer{policy: opts.Policy}
	notify := &notifyHandler{node: node, maxMessageBytes: node.MaxMessageBytes(), pagePath: paths.Page, authorize: auth.authorize}
	events := &eventsHandler{
		now:               now,
		node:              node,
		log:               log,
		metrics:           metrics,
		heartbeatInterval: cfg.SSE.HeartbeatInterval,
		writeTimeout:      cfg.WebSocket.WriteTimeout,
	}

	// Who may publish and subscribe: browsers only from this site or an
	// allowed origin, only so often and so many at once, and only to the
	// topics their credential covers (which the notify handler asks once
	// it has read the topic from the body).
	origins := newOriginPolicy(cfg.Security.AllowedOrigins)
	connections := newConnectionLimiter(cfg.Limits.MaxConnections, cfg.Limits.MaxConnectionsPerIP)
	publishGuards := []echo.MiddlewareFunc{
		origins.middleware(publishing),
		publishRateLimit(cfg.Limits.PublishPerSecond, cfg.Limits.PublishBurst),
	}
	subscribeGuards := []echo.MiddlewareFunc{
		boundedHead,
		origins.middleware(subscribing),
		auth.subscribers,
		connections.middleware,
	}

	// HEAD is answered wherever GET only reads, for uptime checks and
	// curl -I; net/http drops the body. It never publishes.
	e.Match([]string{http.MethodGet, http.MethodHead}, paths.Page, page.show)
	if cfg.Notify.AllowGet {
		e.GET(paths.Notify, chain(notify.publish, publishGuards...))
	} else {
		e.GET(paths.Notify, getPublishingOff)
	}
	e.POST(paths.Notify, chain(notify.publish, publishGuards...))
	engine, err := ws.NewServer(ws.Config{
		MaxFrameBytes: cfg.Limits.MaxFrameBytes,
		PingInterval:  cfg.WebSocket.PingInterval,
		IdleTimeout:   cfg.WebSocket.PingInterval + cfg.WebSocket.PongTimeout,
		WriteTimeout:  cfg.WebSocket.WriteTimeout,
		IOURing:       cfg.WebSocket.IOURing,
		Logger:        log,
	})
	if err != nil {
		return nil, fmt.Errorf("handlers: %w", err)
	}
	metrics.watchEngine(engine)
	subscription := SubscriptionWithConfig(SubscriptionConfig{Node: node, Engine: engine, Logger: log})
	webSocket := &webSocketHandler{now: now, metrics: metrics}
	e.GET(paths.WS, chain(webSocket.serve, append(subscribeGuards, subscription)...))
	e.GET(paths.Events, chain(events.stream, subscribeGuards...))
	e.GET(paths.Access, auth.show)
	pushes := &pushHandler{service: opts.Push, authorize: auth.authorize}
	e.GET(paths.Push+"/key", pushes.key)
	e.POST(paths.Push, chain(pushes.register, boundedHead, origins.middleware(registering))) // kept as long as the browser's subscription
	e.DELETE(paths.Push, chain(pushes.unregister, origins.middleware(registering)))
	e.Match([]string{http.MethodGet, http.MethodHead}, paths.Healthz, health.live)
	e.Match([]string{http.MethodGet, http.MethodHead}, paths.Readyz, health.ready)
	admin := requireToken(opts.AdminToken, operating)
	e.GET(paths.Metrics, chain(echo.WrapHandler(promhttp.HandlerFor(metrics.registry, promhttp.HandlerOpts{})), admin))
	if cfg.Debug.Pprof {
		addProfiles(e, paths.Pprof, admin)
	}
	manifest := &manifestHandler{paths: paths}
	e.Match([]string{http.MethodGet, http.MethodHead}, paths.Static+"/manifest.webmanifest", manifest.show)
	static := echo.StaticDirectoryHandler(opts.Static, !e.EnablePathUnescapingStaticFiles)
	e.Match([]string{http.MethodGet, http.MethodHead}, paths.Static+"/*", static)
	return &Server{opts: opts, log: log, echo: e, engine: engine}, nil
}

// chain wraps h in a route's middleware once, when the route is added.
// Echo's own route middleware is applied again on every request, and each
// application allocates the middleware's closures, a cost each WebSocket
// connection would pay (bench/PERFORMANCE.md). Each middleware
// here keeps its state outside the closure it returns, so applying it once
// changes nothing else.
func chain(h echo.HandlerFunc, middleware ...echo.MiddlewareFunc) echo.HandlerFunc {
	for i := len(middleware) - 1; i >= 0; i-- {
		h = middleware[i](h)
	}
	return h
}
