// Command herald is a self-hosted publish/subscribe web server. Subscribers
// connect to a WebSocket route or open the page; publishers call the notify
// route, and every subscriber gets every message.
package main

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"herald/app"
	"herald/app/access"
	"herald/bench"
	"herald/handlers"
)

// The page's templates and static files live in the binary, so it runs from
// any directory.
//
//go:embed templates static
var assets embed.FS

// defaultConfigPath is read when -config is not given. When it does not
// exist, Herald runs on its built-in defaults and says so.
const defaultConfigPath = "config.yaml"

// Timeouts for plain HTTP requests. WebSocket connections drop these
// deadlines when they are upgraded and keep their own.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 120 * time.Second
)

// errUsage reports bad command-line flags; the flag package has already
// printed the problem and the usage.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, restore default handling so that a second
		// one stops a slow shutdown at once.
		<-ctx.Done()
		stop()
	}()

	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "herald: %v\n", err)
		os.Exit(1)
	}
}

// run starts Herald and serves until ctx ends, then shuts down gracefully.
// It prints the page's URL to stdout once it is listening.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("herald", flag.ContinueOnError)
	flags.SetOutput(stderr)
	configPath := flags.String("config", defaultConfigPath, "read the configuration from `FILE`")
	showVersion := flags.Bool("version", false, "print the version and exit")
	flags.Usage = func() {
		fmt.Fprintf(stderr, "Usage:\n  herald [-config FILE]        serve\n  herald check-config [FILE]   check a config file and print the values in force\n  herald bench [flags]         load-test a server: herald bench -help\n  herald token [flags]         sign a JWT for some topics: herald token -help\n  herald -version              print the version\n\nFlags:\n")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	configGiven := false
	flags.Visit(func(f *flag.Flag) { configGiven = configGiven || f.Name == "config" })

	switch {
	case *showVersion:
		fmt.Fprintln(stdout, versionLine())
		return nil
	case flags.Arg(0) == "check-config":
		if flags.NArg() > 2 {
			return fmt.Errorf("check-config takes at most one FILE, got %d arguments", flags.NArg()-1)
		}
		if flags.NArg() == 2 {
			*configPath, configGiven = flags.Arg(1), true
		}
		return checkConfig(*configPath, configGiven, getenv, stdout)
	case flags.Arg(0) == "token":
		return mintToken(flags.Args()[1:], *configPath, configGiven, getenv, stdout, stderr)
	case flags.Arg(0) == "bench":
		err := bench.Run(ctx, flags.Args()[1:], stdout, stderr)
		if errors.Is(err, bench.ErrUsage) {
			return errUsage
		}
		return err
	case flags.NArg() > 0:
		return fmt.Errorf("unexpected argument %q: run herald -help for usage", flags.Arg(0))
	}

	cfg, source, err := loadConfig(*configPath, configGiven, getenv)
	if err != nil {
		return err
	}
	logger := newLogger(cfg.Log, stderr)

	var store app.Store
	if cfg.History.File != "" {
		bolt, err := app.OpenBoltStore(cfg.History.File)
		if err != nil {
			return err
		}
		store = bolt
		defer func() {
			if err := bolt.Close(); err != nil {
				logger.Error("close history file", "err", err)
			}
		}()
	}
	hub, err := app.NewHub(app.HubOptions{
		MaxLagBytes:     cfg.Limits.MaxLagBytes,
		MaxMessageBytes: cfg.Limits.MaxMessageBytes,
		HistorySize:     cfg.History.Size,
		HistoryTTL:      cfg.History.TTL,
		MaxTopics:       cfg.Limits.MaxTopics,
		Store:           store,
		CommitDelay:     cfg.History.CommitDelay,
		Logger:          logger,
	})
	if err != nil {
		return err
	}
	templates, err := fs.Sub(assets, "templates")
	if err != nil {
		return fmt.Errorf("embedded templates: %w", err)
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return fmt.Errorf("embedded static files: %w", err)
	}
	e, err := handlers.New(handlers.Options{Config: cfg, Hub: hub, Logger: logger, Templates: templates, Static: static, Getenv: getenv})
	if err != nil {
		return err
	}

	var tlsConfig *tls.Config
	if cfg.TLS.Cert != "" {
		pair, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return fmt.Errorf("tls: load %s and %s: %w", cfg.TLS.Cert, cfg.TLS.Key, err)
		}
		// HTTP/1.1 only: WebSocket upgrades need it, and x/net/websocket
		// has no HTTP/2 support.
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	}

	listener, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w: another program has this port; set port in %s or HERALD_PORT", err, *configPath)
	}
	if err != nil {
		return err // "listen tcp host:port: ..." says what failed
	}
	server := &http.Server{
		Handler:           e,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		TLSConfig:         tlsConfig,
	}
	served := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			served <- server.ServeTLS(listener, "", "")
			return
		}
		served <- server.Serve(listener)
	}()
	sweepCtx, stopSweeping := context.WithCancel(ctx)
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		sweepPeriodically(sweepCtx, hub, sweepInterval(cfg.History.TTL), logger)
	}()
	defer func() {
		stopSweeping()
		<-swept
	}()

	history := "memory"
	if store != nil {
		history = cfg.History.File
	}
	logger.Info("herald started", "addr", listener.Addr().String(), "config", source, "history", history)
	fmt.Fprintf(stdout, "Herald is listening on %s\n", pageURL(cfg, listener.Addr()))

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	logger.Info("shutting down", "grace", cfg.ShutdownGrace)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownGrace)
	defer cancel()
	// Stop accepting, and meanwhile end every subscription: net/http waits
	// for event streams, which end only when the hub closes them, and does
	// not track hijacked WebSockets at all. Each subscriber gets what was
	// published to it and not yet sent, then a 1001 close or the end of its
	// stream. A publish still in flight either reaches the log before the
	// hub closes or is refused with 503.
	httpDone := make(chan error, 1)
	go func() { httpDone <- server.Shutdown(shutdownCtx) }()
	hubErr := hub.Shutdown(shutdownCtx)
	httpErr := <-httpDone
	<-served
	if err := errors.Join(httpErr, hubErr); err != nil {
		server.Close()
		return fmt.Errorf("shutdown after %s: %w", cfg.ShutdownGrace, err)
	}
	logger.Info("stopped")
	return nil
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

// newLogger builds the structured logger that log.format and log.level
// describe; the config has been validated.
func newLogger(cfg app.LogConfig, w io.Writer) *slog.Logger {
	level, _ := cfg.SlogLevel()
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// checkConfig validates a configuration as run would load it and prints the
// values in force, environment included.
func checkConfig(path string, given bool, getenv func(string) string, stdout io.Writer) error {
	cfg, source, err := loadConfig(path, given, getenv)
	if err != nil {
		return err
	}
	accessConfig := cfg.Security.Access()
	accessConfig.Getenv = getenv
	policy, err := access.NewPolicy(accessConfig, nil)
	if err != nil {
		return err
	}
	if source == builtInDefaults {
		fmt.Fprintf(stdout, "# No config file at %s: Herald runs on its built-in defaults, which are valid. The values in force (tokens hidden):\n%s",
			path, cfg.Redacted().YAML())
	} else {
		fmt.Fprintf(stdout, "# %s is valid. The values in force (tokens hidden):\n%s", source, cfg.Redacted().YAML())
	}
	fmt.Fprintf(stdout, "# Clients without a token may %s (security.anonymous: %s).\n", describeRights(policy.Anonymous()), cfg.Security.Anonymous)
	if len(cfg.Security.AllowedHosts) == 0 {
		fmt.Fprintln(stdout, "# security.allowed_hosts is empty: only localhost names and IP addresses are answered.\n# A server reached by a public name must list that name there.")
	}
	return nil
}

// describeRights words what a grant on every topic allows.
func describeRights(g *access.Grant) string {
	read, write := g.Allows(access.Read, "any"), g.Allows(access.Write, "any")
	switch {
	case read && write:
		return "subscribe and publish"
	case read:
		return "subscribe, but not publish"
	case write:
		return "publish, but not subscribe"
	}
	return "neither subscribe nor publish"
}

// version is the release this binary was built as, when the build says
// so: go build -buildvcs=true -ldflags "-X main.version=v1.2.3". Empty
// otherwise.
var version = ""

// versionLine says which Herald this is.
func versionLine() string {
	info, ok := debug.ReadBuildInfo()
	return describeBuild(version, info, ok)
}

// describeBuild words what a build recorded: the release or module
// version, the commit and the Go release. go run, go test and
// -buildvcs=false record no commit, and then the line says how to get one.
func describeBuild(release string, info *debug.BuildInfo, ok bool) string {
	if !ok {
		return "herald (no build information: build with go build)"
	}
	if release == "" {
		release = info.Main.Version
	}
	if release == "" || release == "(devel)" {
		release = "development build"
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	line := "herald " + release
	if rev := settings["vcs.revision"]; rev != "" {
		line += ", commit " + rev
		if settings["vcs.modified"] == "true" {
			line += " with uncommitted changes"
		}
		if at := settings["vcs.time"]; at != "" {
			line += " of " + at
		}
	} else {
		line += ", no commit recorded (go run and -buildvcs=false record none: build with go build -buildvcs=true in a git checkout)"
	}
	return line + ", " + info.GoVersion
}

// builtInDefaults is the source of the configuration when there is no file.
const builtInDefaults = "built-in defaults"

// loadConfig reads the configuration and applies the environment. A missing
// default file means built-in defaults; a missing file named by -config is
// an error.
func loadConfig(path string, given bool, getenv func(string) string) (app.Config, string, error) {
	cfg, err := app.LoadConfig(path)
	source := path
	if errors.Is(err, fs.ErrNotExist) && !given {
		cfg, source, err = app.DefaultConfig(), builtInDefaults, nil
	}
	if err != nil {
		return app.Config{}, "", err
	}
	if err := app.ApplyEnv(&cfg, getenv); err != nil {
		return app.Config{}, "", err
	}
	return cfg, source, nil
}

// pageURL is the address people can open: an unspecified listen host is
// reachable as localhost.
func pageURL(cfg app.Config, addr net.Addr) string {
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
