package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"herald/app/client"
)

// tokenEnv holds the token herald sub and herald pub send when -token is
// not given, which keeps it out of the process list.
const tokenEnv = "HERALD_TOKEN"

// execStopGrace is how long an -exec command has to end after herald sub
// is stopped and has asked it to, before it is killed.
const execStopGrace = 5 * time.Second

// maxStdinMessage bounds a message read from stdin; a server refuses far
// smaller ones (limits.max_message_bytes) anyway.
const maxStdinMessage = 64 << 20

// subscribeCommand is "herald sub": it prints a topic's messages as they
// come, and reconnects and resumes by itself until ctx ends.
func subscribeCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("herald sub", flag.ContinueOnError)
	flags.SetOutput(stderr)
	topic := flags.String("topic", "", "the `TOPIC` to watch; without it, the URL's ?topic=, else the server's default topic")
	since := flags.String("since", "", "first print the kept messages after message `ID`, or all kept ones with all; without it, only new messages")
	asJSON := flags.Bool("json", false, `print each message as its JSON object, one per line: {"id","topic","time","msg"}`)
	token := flags.String("token", "", "send `TOKEN` as Authorization: Bearer (default $"+tokenEnv+")")
	command := flags.String("exec", "", "run `CMD` with sh -c for each message instead of printing it, one at a time and in order: the text on its stdin, "+
		"HERALD_TOPIC, HERALD_ID and HERALD_TIME in its environment; a command that fails is reported and the next message goes on")
	flags.Usage = func() {
		fmt.Fprint(stderr, `Usage: herald sub [-topic T] [-since ID|all] [-json] [-token T] [-exec CMD] URL

Prints each message of a topic as it arrives, its text and a line break, and
reconnects by itself, resuming after the last message it printed. A message
with line breaks spans several lines: -json and -exec show where each ends.
Notices (lost messages, reconnects) go to stderr. Ctrl-C stops it.

URL is the server's address, such as http://localhost:9000, or the URL of
any of its routes at their default paths (/events, /notify, /ws): herald sub
reads the event stream (/events) there. Where paths.events moved it, give
the event stream's full URL, such as https://example.com/herald/stream.

Flags:
`)
		flags.PrintDefaults()
	}
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	if flags.NArg() != 1 {
		return usageProblem(stderr, "herald sub", "give one URL, the server's address such as http://localhost:9000"+flagsFirst(flags.NArg(), 1))
	}
	eventsURL, err := client.EventsURL(flags.Arg(0))
	if err != nil {
		return usageProblem(stderr, "herald sub", err.Error())
	}
	sub := client.Subscription{Topic: *topic}
	if *since != "" {
		sub.Resume = true
		if *since != "all" {
			if sub.Since, err = strconv.ParseUint(*since, 10, 64); err != nil {
				return usageProblem(stderr, "herald sub", fmt.Sprintf("-since %q is neither a message id nor all", *since))
			}
		}
	}
	sub.Notify = func(n client.Notice) {
		if line := describeNotice(n); line != "" {
			fmt.Fprintln(stderr, "herald sub: "+line)
		}
	}
	handle := func(m client.Message) error {
		var line []byte
		switch {
		case *command != "":
			if err := runForMessage(ctx, *command, m, stdout, stderr); err != nil && ctx.Err() == nil {
				fmt.Fprintf(stderr, "herald sub: -exec for message %d failed: %v; going on with the next message\n", m.ID, err)
			}
			return nil
		case *asJSON:
			line = append(m.JSON, '\n')
		default:
			line = append([]byte(m.Text), '\n')
		}
		_, err := stdout.Write(line) // one write a message, so that a line is never split
		return err
	}

	c := client.New(tokenFrom(*token, getenv))
	defer c.Close()
	if err := c.Subscribe(ctx, eventsURL, sub, handle); err != nil {
		return fmt.Errorf("sub: %s: %w%s", route(eventsURL), err, refusalHint(err, "the server's address, such as http://localhost:9000, or the full URL of its event stream (paths.events)"))
	}
	return nil
}

// runForMessage runs command with sh -c for m and waits for it: m's text
// on its stdin, its topic, id and time in its environment, and its output
// where herald sub's goes.
func runForMessage(ctx context.Context, command string, m client.Message, stdout, stderr io.Writer) error {
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Stdin = strings.NewReader(m.Text)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = append(os.Environ(),
		"HERALD_TOPIC="+m.Topic,
		"HERALD_ID="+strconv.FormatUint(m.ID, 10),
		"HERALD_TIME="+m.Time.UTC().Format(time.RFC3339Nano))
	// Stopping herald sub asks the command to stop, as a terminal's Ctrl-C
	// would, rather than killing it outright.
	stopWithHerald(cmd)
	cmd.WaitDelay = execStopGrace
	return cmd.Run()
}

// describeNotice words what a subscription was told, for stderr; "" says
// nothing.
func describeNotice(n client.Notice) string {
	switch n.Kind {
	case client.NoticeLost:
		if n.Count == nil {
			return fmt.Sprintf("lost: an unknown number of messages after id %d (the server no longer has that history)", n.Since)
		}
		messages := "messages"
		if *n.Count == 1 {
			messages = "message"
		}
		return fmt.Sprintf("lost: %d %s after id %d (history no longer reaches back that far)", *n.Count, messages, n.Since)
	case client.NoticeBrokerDown:
		return "the server lost its broker (Redis): nothing new arrives until it is back"
	case client.NoticeBrokerUp:
		return "the server's broker (Redis) is back: what was published meanwhile follows"
	case client.NoticeExpired:
		return "the token expired, and the server ended the stream"
	case client.NoticeRetrying:
		return fmt.Sprintf("%v; trying again in %.1fs", n.Err, n.Wait.Seconds())
	case client.NoticeReconnected:
		if n.Resumed {
			return fmt.Sprintf("connected again, resuming after id %d", n.Since)
		}
		return "connected again; no message had come yet to resume after, so any published meanwhile are not shown (-since resumes from an id)"
	}
	return ""
}

// publishCommand is "herald pub": it publishes one message and prints the
// receipt.
func publishCommand(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("herald pub", flag.ContinueOnError)
	flags.SetOutput(stderr)
	topic := flags.String("topic", "", "the `TOPIC` to publish to; without it, the URL's ?topic=, else the server's default topic")
	token := flags.String("token", "", "send `TOKEN` as Authorization: Bearer (default $"+tokenEnv+")")
	key := flags.String("key", "", "send `KEY` as the Idempotency-Key (default a new random one): the key of a publish whose outcome was unknown publishes it exactly once")
	flags.Usage = func() {
		fmt.Fprint(stderr, `Usage: herald pub [-topic T] [-token T] [-key K] URL MESSAGE

Publishes MESSAGE, or with - what stdin holds (less one final line break),
and prints the server's receipt: {"id","topic","subscribers"}. A refusal is
said on stderr, with exit status 1.

URL is the server's address, such as http://localhost:9000, or the URL of
any of its routes at their default paths (/events, /notify, /ws): herald pub
posts to the notify route (/notify) there. Where paths.notify moved it, give
its full URL.

Flags:
`)
		flags.PrintDefaults()
	}
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	if flags.NArg() != 2 {
		return usageProblem(stderr, "herald pub", "give the server's URL and the message (- reads it from stdin)"+flagsFirst(flags.NArg(), 2))
	}
	notifyURL, err := client.NotifyURL(flags.Arg(0))
	if err != nil {
		return usageProblem(stderr, "herald pub", err.Error())
	}
	p := client.Publication{Topic: *topic, Text: flags.Arg(1), IdempotencyKey: *key}
	if p.Text == "-" {
		if p.Text, err = readStdinMessage(stdin); err != nil {
			return fmt.Errorf("pub: %w", err)
		}
	}
	if p.IdempotencyKey == "" {
		p.IdempotencyKey = client.NewIdempotencyKey()
	}

	c := client.New(tokenFrom(*token, getenv))
	defer c.Close()
	receipt, err := c.Publish(ctx, notifyURL, p)
	var refusal *client.Refusal
	switch {
	case errors.As(err, &refusal) && refusal.Code == "outcome_unknown":
		return fmt.Errorf("pub: %s: the outcome is unknown (HTTP 504): the server's broker (Redis) took the message but could not confirm it in time, "+
			"so it reaches every subscriber once or no one; to publish it exactly once, run the same command again with -key %s", route(notifyURL), p.IdempotencyKey)
	case errors.Is(err, client.ErrNoAnswer):
		return fmt.Errorf("pub: %s: %w; with broker: redis, running the same command again with -key %s publishes it exactly once", route(notifyURL), err, p.IdempotencyKey)
	case err != nil:
		return fmt.Errorf("pub: %s: %w%s", route(notifyURL), err, refusalHint(err, "the server's address, such as http://localhost:9000, or the full URL of its notify route (paths.notify)"))
	}
	_, err = stdout.Write(append(bytes.TrimSpace(receipt.JSON), '\n'))
	return err
}

// readStdinMessage reads a message from stdin, less one final line break,
// which echo and most editors add.
func readStdinMessage(stdin io.Reader) (string, error) {
	text, err := io.ReadAll(io.LimitReader(stdin, maxStdinMessage+1))
	switch {
	case err != nil:
		return "", fmt.Errorf("read the message from stdin: %w", err)
	case len(text) > maxStdinMessage:
		return "", fmt.Errorf("stdin holds more than %d MiB, more than a message can be", maxStdinMessage>>20)
	}
	text = bytes.TrimSuffix(text, []byte("\n"))
	text = bytes.TrimSuffix(text, []byte("\r"))
	return string(text), nil
}

// tokenFrom is the token given with -token, else the one in HERALD_TOKEN.
func tokenFrom(flagged string, getenv func(string) string) string {
	if flagged != "" {
		return flagged
	}
	return getenv(tokenEnv)
}

// refusalHint adds to a refusal what the user can do about it, where the
// server's own words do not say it: which URL to give, or where the token
// goes.
func refusalHint(err error, url string) string {
	var refusal *client.Refusal
	if !errors.As(err, &refusal) {
		return ""
	}
	switch {
	case refusal.Code == "token_required":
		return "; herald takes the token from -token or " + tokenEnv
	case refusal.Status == http.StatusNotFound || refusal.Status == http.StatusMethodNotAllowed:
		return "; give " + url
	}
	return ""
}

// usageProblem says in one line what is wrong with a command's arguments,
// and makes its exit status 2.
func usageProblem(stderr io.Writer, command, problem string) error {
	fmt.Fprintf(stderr, "%s: %s; %s -help says more\n", command, problem, command)
	return errUsage
}

// flagsFirst explains too many arguments: flags after the URL are taken
// for arguments, since flags end at the first argument.
func flagsFirst(got, want int) string {
	if got <= want {
		return ""
	}
	return fmt.Sprintf(" (got %d arguments: flags go before the URL)", got)
}

// route is where a request went, for messages: the URL without its
// query, which may hold a token.
func route(u *url.URL) string {
	return u.Scheme + "://" + u.Host + u.Path
}
