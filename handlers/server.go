package handlers

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"herald/handlers/upgrade"
	"herald/handlers/ws"
)

// Timeouts for plain HTTP requests. WebSocket connections drop these
// deadlines when they are upgraded and keep their own, and event streams
// set a deadline per write.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 120 * time.Second
)

// maxHeaderBytes is the longest request head net/http reads, in place of
// its megabyte: room for a message published in the URL with every byte
// escaped, and for headers. A connection idle between requests keeps its
// last request, so this bounds what each one can hold.
func maxHeaderBytes(maxMessageBytes int) int { return 3*maxMessageBytes + 16<<10 }

// Server is Herald's HTTP edge: the routes, the WebSocket engine that
// serves the upgraded connections, and the listener that takes WebSocket
// upgrades ahead of net/http. NewServer builds it; Serve runs it and stops
// it, in reverse order, when its context ends.
type Server struct {
	opts   Options
	log    *slog.Logger
	echo   *echo.Echo
	engine *ws.Server
	http   *http.Server
	// upgrades serves WebSocket upgrades ahead of net/http; nil with TLS,
	// where net/http serves them too.
	upgrades *upgrade.Listener
}

// NewServer builds every route and the WebSocket engine. If it fails, it
// has started nothing.
func NewServer(opts Options) (*Server, error) {
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	var tlsConfig *tls.Config
	if cert := opts.Config.TLS; cert.Cert != "" {
		pair, err := tls.LoadX509KeyPair(cert.Cert, cert.Key)
		if err != nil {
			s.engine.Close()
			return nil, fmt.Errorf("tls: load %s and %s: %w", cert.Cert, cert.Key, err)
		}
		// HTTP/1.1 only: WebSocket upgrades need it, and x/net/websocket
		// has no HTTP/2 support.
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	}
	s.http = &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: readHeaderTimeout,
		MaxHeaderBytes:    maxHeaderBytes(opts.Config.Limits.MaxMessageBytes),
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		TLSConfig:         tlsConfig,
		// So that an event stream can stop waiting on a full socket when
		// the server shuts down.
		ConnContext: upgrade.ConnContext,
	}
	return s, nil
}

// Handler is the server's routes, for tests that serve them alone.
func (s *Server) Handler() http.Handler { return s.echo }

// Close stops a server that will never Serve.
func (s *Server) Close() { s.engine.Close() }

// Serve serves on listener until ctx ends or serving fails, then shuts
// down: it stops accepting, ends every subscription (each subscriber gets
// what was published to it, then a 1001 close or the end of its stream),
// and stops the WebSocket engine. It returns why it stopped, when that
// was not ctx.
func (s *Server) Serve(ctx context.Context, listener net.Listener) error {
	if s.http.TLSConfig != nil {
		// So that shutdown can stop waiting on full sockets beneath TLS.
		listener = upgrade.StopWaitingListener(listener)
	} else {
		s.upgrades = upgrade.NewListener(listener, upgrade.Config{
			Handler:           s.http.Handler,
			Paths:             []string{s.opts.Config.Paths.WS},
			ReadHeaderTimeout: s.http.ReadHeaderTimeout,
			WriteTimeout:      s.http.WriteTimeout,
			Logger:            s.log,
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
	var reason error
	select {
	case err := <-served:
		reason = fmt.Errorf("serve: %w", err)
		served <- err // shutdown waits on it
	case <-ctx.Done():
	}
	return errors.Join(reason, s.shutdown(ctx, served))
}

// shutdown stops accepting, and meanwhile ends every subscription:
// net/http waits for event streams, which end only when the hub closes
// them, and does not track hijacked WebSockets at all. A publish still in
// flight either reaches the log before the hub closes or is refused with
// 503. The engine stops once its connections have finished.
func (s *Server) shutdown(ctx context.Context, served <-chan error) error {
	grace := s.opts.Config.ShutdownGrace
	s.log.Info("shutting down", "grace", grace)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	httpDone := make(chan error, 1)
	go func() { httpDone <- s.http.Shutdown(shutdownCtx) }()
	hubErr := s.opts.Node.Shutdown(shutdownCtx)
	httpErr := <-httpDone
	<-served
	if s.upgrades != nil {
		s.upgrades.Wait() // upgrades half done when the listener closed
	}
	if err := errors.Join(httpErr, hubErr); err != nil {
		s.http.Close()
		s.engine.Close()
		return fmt.Errorf("shutdown after %s: %w", grace, err)
	}
	s.engine.Close()
	return nil
}
