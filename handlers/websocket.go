package handlers

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"herald/app"
	"herald/handlers/ws"
)

// The WebSocket route: the Subscription middleware subscribes the client
// and upgrades its connection, and webSocketHandler hands the connection
// to the engine (package ws), which serves it from then on.

const connKey = "herald.websocket"

// SubscriptionConfig configures the Subscription middleware.
type SubscriptionConfig struct {
	// Skipper skips the middleware for requests it returns true for.
	Skipper middleware.Skipper
	// Node registers the subscriptions. Required.
	Node *app.Node
	// Engine upgrades and serves the connections. Required.
	Engine *ws.Server
	// Logger receives what goes wrong; nil discards it.
	Logger *slog.Logger
}

// DefaultSubscriptionConfig holds the defaults that SubscriptionWithConfig
// fills in.
var DefaultSubscriptionConfig = SubscriptionConfig{Skipper: middleware.DefaultSkipper}

// SubscriptionWithConfig returns middleware that subscribes the client of
// a WebSocket upgrade request and upgrades its connection, for the next
// handler to start. The subscription is released when the connection
// closes, through the request's scope.
//
// The request's ?topic=, ?since= and ?format= are checked first, and a bad
// one is refused with 400 before any upgrade. The subscriber is registered
// before the 101 reply is written: a client that has connected has
// subscribed, so nothing published after its handshake completes can miss
// it. Plain HTTP gets 426 with a JSON explanation.
//
// It panics if config has no Node or Engine.
func SubscriptionWithConfig(config SubscriptionConfig) echo.MiddlewareFunc {
	if config.Node == nil || config.Engine == nil {
		panic("echo: subscription middleware requires a node and an engine")
	}
	if config.Skipper == nil {
		config.Skipper = DefaultSubscriptionConfig.Skipper
	}
	if config.Logger == nil {
		config.Logger = slog.New(slog.DiscardHandler)
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if config.Skipper(c) {
				return next(c)
			}
			req := c.Request()
			if !ws.IsUpgrade(req) {
				c.Response().Header().Set(echo.HeaderUpgrade, "websocket")
				return newClientError(http.StatusUpgradeRequired,
					"this is the WebSocket route: connect with a WebSocket client, not plain HTTP")
			}
			sub, params, err := subscribe(config.Node, req, c.QueryParams(), c.RealIP(), false) // text mode has no room for notices
			if err != nil {
				return err
			}
			// Released when the connection closes, which is after this
			// returns once the connection is upgraded.
			scopeOf(c).onEnd(sub.Close)
			conn, err := config.Engine.Accept(c.Response().Writer, req, sub, params.json, c.RealIP())
			switch {
			case errors.Is(err, ws.ErrHandshake):
				// x/net wrote its refusal on the hijacked connection; the log
				// can only say it was not 101. Returning an error would make
				// Echo write to it too.
				c.Response().Status = http.StatusBadRequest
				return nil
			case err != nil:
				return err
			}
			c.Response().Status = http.StatusSwitchingProtocols
			c.Set(connKey, conn)
			if err := next(c); err != nil {
				config.Logger.Error("websocket handler failed", "remote", c.RealIP(), "err", err)
				conn.Abort()
			}
			return nil
		}
	}
}

// webSocketHandler starts each connection the Subscription middleware
// upgraded, and returns at once, so that the request's goroutine and
// buffers are freed; the request's cleanups run when the connection
// closes.
type webSocketHandler struct {
	now     func() time.Time // the clock credentials expire by
	metrics *metrics
}

func (h *webSocketHandler) serve(c echo.Context) error {
	conn, ok := c.Get(connKey).(*ws.Conn)
	if !ok {
		return errors.New("websocket route: no connection: the route needs the Subscription middleware")
	}
	scope := scopeOf(c)
	scope.onEnd(h.metrics.connected(transportWebSocket))
	scope.onEnd(whenCredentialExpires(c, h.now, func() { conn.Close(ws.CloseCredentialExpired) }))
	conn.Start(scope.detach())
	return nil
}
