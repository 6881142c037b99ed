// Command herald is a self-hosted publish/subscribe web server. Subscribers
// connect to a WebSocket route or open the page; publishers call the notify
// route, and every subscriber gets every message.
package main

import (
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"herald/app/access"
	"herald/app/config"
	"herald/bench"
)

// The page's templates and static files live in the binary, so it runs from
// any directory.
//
//go:embed templates static
var assets embed.FS

// defaultConfigPath is read when -config is not given. When it does not
// exist, Herald runs on its built-in defaults and says so.
const defaultConfigPath = "config.yaml"

// errUsage reports bad command-line flags; the flag package has already
// printed the problem and the usage.
var errUsage = errors.New("usage")

// parseCommandFlags parses the flags of a command such as herald token,
// which take -config too: configGiven is set when it was given there, or
// before the command.
func parseCommandFlags(flags *flag.FlagSet, args []string, configGiven *bool) error {
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	flags.Visit(func(f *flag.Flag) { *configGiven = *configGiven || f.Name == "config" })
	return nil
}

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
		fmt.Fprintf(stderr, "Usage:\n  herald [-config FILE]        serve\n  herald check-config [FILE]   check a config file and print the values in force\n  herald bench [flags]         load-test a server: herald bench -help\n  herald token [flags]         sign a JWT for some topics: herald token -help\n  herald reset-history         say what a damaged history file lost; -confirm sets it aside\n  herald sub [flags] URL       print a topic's messages as they come: herald sub -help\n  herald pub [flags] URL MSG   publish a message (- reads stdin): herald pub -help\n  herald -version              print the version\n\nFlags:\n")
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
	case flags.Arg(0) == "reset-history":
		return resetHistory(flags.Args()[1:], *configPath, configGiven, getenv, stdout, stderr)
	case flags.Arg(0) == "sub":
		return subscribeCommand(ctx, flags.Args()[1:], getenv, stdout, stderr)
	case flags.Arg(0) == "pub":
		return publishCommand(ctx, flags.Args()[1:], getenv, os.Stdin, stdout, stderr)
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
	if err := cfg.CheckSecrets(source, getenv); err != nil {
		return err
	}
	logger := newLogger(cfg.Log, stderr)
	herald, err := newInstance(cfg, logger, getenv)
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
			return fmt.Errorf("%w: another program has this port; set port in %s or HERALD_PORT", err, *configPath)
		}
		return err // "listen tcp host:port: ..." says what failed
	}
	history := "memory"
	switch {
	case cfg.Broker == "redis":
		history = "redis"
	case cfg.History.File != "":
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

// checkConfig validates a configuration as run would load it and prints the
// values in force, environment included.
func checkConfig(path string, given bool, getenv func(string) string, stdout io.Writer) error {
	cfg, source, err := loadConfig(path, given, getenv)
	if err != nil {
		return err
	}
	if err := cfg.CheckSecrets(source, getenv); err != nil {
		return err
	}
	accessConfig := cfg.Security.Access()
	accessConfig.Getenv = getenv
	policy, err := access.NewPolicy(accessConfig, nil)
	if err != nil {
		return err
	}
	if source.Name == builtInDefaults {
		fmt.Fprintf(stdout, "# No config file at %s: Herald runs on its built-in defaults, which are valid. The values in force (tokens hidden):\n%s",
			path, cfg.Redacted().YAML())
	} else {
		fmt.Fprintf(stdout, "# %s is valid. The values in force (tokens hidden):\n%s", source.Name, cfg.Redacted().YAML())
	}
	fmt.Fprintf(stdout, "# Clients without a token may %s (security.anonymous: %s).\n", describeRights(policy.Anonymous()), cfg.Security.Anonymous)
	if !policy.TakesCredentials() {
		var nobody []string
		for _, a := range []struct {
			action access.Action
			verb   string
		}{{access.Read, "subscribe"}, {access.Write, "publish"}} {
			if !policy.Anonymous().Allows(a.action, "any") {
				nobody = append(nobody, a.verb)
			}
		}
		if len(nobody) > 0 {
			fmt.Fprintf(stdout, "# No token or JWT key is configured, so no client can %s.\n", strings.Join(nobody, " or "))
		}
	}
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
// an error. The secrets it refers to are read later, by those that need
// them (config.Config.CheckSecrets).
func loadConfig(path string, given bool, getenv func(string) string) (config.Config, config.Source, error) {
	cfg, source, err := config.Load(path)
	if errors.Is(err, fs.ErrNotExist) && !given {
		cfg, source, err = config.Default(), config.Source{Name: builtInDefaults}, nil
	}
	if err != nil {
		return config.Config{}, config.Source{}, err
	}
	if err := config.ApplyEnv(&cfg, getenv); err != nil {
		return config.Config{}, config.Source{}, err
	}
	return cfg, source, nil
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
