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
	"os"
	"os/signal"
	"syscall"

	"herald/app/config"
	"herald/bench"
)

// The page's templates and static files live in the binary, so it runs from
// any directory.
//
//go:embed templates static
var assets embed.FS

// The app icons are the favicon drawn large. After favicon.svg changes,
// `go generate` redraws them with rsvg-convert (Debian's librsvg2-bin). The
// maskable one has square corners: Android crops it to a shape of its own.
//
//go:generate rsvg-convert -w 192 -h 192 -o static/icon-192.png static/favicon.svg
//go:generate rsvg-convert -w 512 -h 512 -o static/icon-512.png static/favicon.svg
//go:generate sh -c "sed 's/ rx=\"8\"//' static/favicon.svg | rsvg-convert -w 512 -h 512 -o static/icon-maskable-512.png"

// defaultConfigPath is read when -config is not given. When it does not
// exist, Herald runs on its built-in defaults and says so.
const defaultConfigPath = "config.yaml"

// errUsage reports bad command-line flags; the flag package has already
// printed the problem and the usage.
var errUsage = errors.New("usage")

// parseFlags parses a command's flags. -help is flag.ErrHelp; any other
// mistake is a usage error, which the flag package has printed.
func parseFlags(flags *flag.FlagSet, args []string) error {
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

// parseCommandFlags is parseFlags for herald itself and for commands such
// as herald token, which take -config too: configGiven is set when -config
// was given there, or before the command.
func parseCommandFlags(flags *flag.FlagSet, args []string, configGiven *bool) error {
	if err := parseFlags(flags, args); err != nil {
		return err
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
	configGiven := false
	if err := parseCommandFlags(flags, args, &configGiven); err != nil {
		return err
	}

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

	return serveCommand(ctx, *configPath, configGiven, getenv, stdout, stderr)
}

// loadConfig reads the configuration and applies the environment. A missing
// default file means built-in defaults; a missing file named by -config is
// an error. The secrets it refers to are read later, by those that need
// them (config.Config.ReadSecrets).
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
