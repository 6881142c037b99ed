package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"syscall"

	"herald/app/config"
)

// serveCommand runs Herald: it loads the configuration, builds the
// instance, listens, and serves until ctx ends.
func serveCommand(ctx context.Context, configPath string, configGiven bool, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, source, err := loadConfig(configPath, configGiven, getenv)
	if err != nil {
		return err
	}
	secrets, err := cfg.ReadSecrets(source, getenv)
	if err != nil {
		return err
	}
	logger := newLogger(cfg.Log, stderr)
	herald, err := newInstance(cfg, secrets, logger)
	if err != nil {
		return err
	}
	// No TCP keep-alive probes: every connection that can sit idle already
	// has a liveness check of its own (WebSocket pings, event stream
	// heartbeats, the HTTP idle timeout), and the probes' four setsockopt
	// calls were a measurable part of what accepting a connection cost.
	listen := net.ListenConfig{KeepAlive: -1}
	listener, err := listen.Listen(ctx, "tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		herald.close()
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%w: another program has this port; set port in %s or HERALD_PORT", err, configPath)
		}
		return err // "listen tcp host:port: ..." says what failed
	}
	history := cfg.HistoryKind()
	if history == "file" {
		history = cfg.History.File
	}
	logger.Info("herald started", "addr", listener.Addr().String(), "config", source.Name, "history", history, "broker", cfg.Broker)
	fmt.Fprintf(stdout, "Herald is listening on %s\n", pageURL(cfg, listener.Addr()))
	if err := herald.serve(ctx, listener); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// newLogger builds the structured logger that log.format and log.level
// describe; the config has been validated.
func newLogger(cfg config.Log, w io.Writer) *slog.Logger {
	level, _ := cfg.SlogLevel()
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// pageURL is the address people can open: an unspecified listen host is
// reachable as localhost.
func pageURL(cfg config.Config, addr net.Addr) string {
	host := cfg.Host
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	port := cfg.Port
	if tcp, ok := addr.(*net.TCPAddr); ok {
		port = tcp.Port
	}
	scheme := "http"
	if cfg.TLS.Cert != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + cfg.Paths.Page
}
