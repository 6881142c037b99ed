// Package bench is Herald's load generator, run as "herald bench". It
// connects many WebSocket subscribers to any server, publishes numbered,
// time-stamped messages to a notify URL, and reports what arrived: every
// delivery is counted against every message sent, so a figure with loss is
// never passed off as throughput. Given the server's pid it also reports
// the server's CPU time and resident memory.
package bench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Options is one benchmark run.
type Options struct {
	SubscribeURL string        // WebSocket URLs, ws:// or wss://, comma-separated: subscribers take them in turn
	PublishURL   string        // http(s) URLs that publish a POSTed text/plain body, comma-separated: publishers take them in turn
	Subscribers  int           // WebSocket connections to open
	Messages     int           // messages to publish
	Rate         float64       // messages a second in all; 0 publishes as fast as Publishers go
	Publishers   int           // concurrent publishing clients
	Topics       int           // topics the subscribers and messages are spread over; 1 leaves the URLs' topic alone
	TopicPrefix  string        // with several topics, their names are TopicPrefix followed by 0 to Topics-1
	Size         int           // bytes per message
	Wait         time.Duration // how long to wait for stragglers after the last publish
	ConnectRate  int           // subscribers connecting at once
	PID          int           // the server's pid, for its CPU time and memory; 0 skips them
	JSON         bool          // print the report as JSON
}

// Run parses args as "herald bench" flags, runs the benchmark and prints the
// report to stdout; progress goes to stderr when it is a terminal.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	progress := newProgress(stderr)
	report, err := run(ctx, opts, progress)
	progress.done()
	if report != nil {
		// A run that failed part way still reports what it measured.
		if writeErr := report.write(stdout, opts.JSON); err == nil {
			err = writeErr
		}
	}
	return err
}

// ErrUsage reports bad flags; the flag package has printed the problem.
var ErrUsage = errors.New("bench: bad flags")

func parseFlags(args []string, stderr io.Writer) (Options, error) {
	flags := flag.NewFlagSet("herald bench", flag.ContinueOnError)
	flags.SetOutput(stderr)
	var o Options
	flags.StringVar(&o.SubscribeURL, "ws", "ws://127.0.0.1:9000/ws", "WebSocket `URLs` subscribers connect to, comma-separated for several instances (taken in turn)")
	flags.StringVar(&o.PublishURL, "publish", "http://127.0.0.1:9000/notify", "`URLs` that messages are POSTed to as text/plain, comma-separated for several instances (taken in turn)")
	flags.IntVar(&o.Subscribers, "subscribers", 1000, "WebSocket subscribers to connect")
	flags.IntVar(&o.Messages, "messages", 2000, "messages to publish")
	flags.Float64Var(&o.Rate, "rate", 0, "publishes a second in all; 0 publishes as fast as the publishers go")
	flags.IntVar(&o.Publishers, "publishers", 8, "concurrent publishers")
	flags.IntVar(&o.Topics, "topics", 1, "spread subscribers and messages over this many topics: subscriber i watches topic i mod N, message k goes to topic k mod N; 1 uses the topic the URLs name")
	flags.StringVar(&o.TopicPrefix, "topic-prefix", "bench-", "with -topics above 1, topics are named `PREFIX`0, PREFIX1, ... (Herald's ?topic=)")
	flags.IntVar(&o.Size, "size", 64, "bytes per message (at least 40, for the sequence number and send time)")
	flags.DurationVar(&o.Wait, "wait", 10*time.Second, "how long to wait after the last publish for deliveries still on their way")
	flags.IntVar(&o.ConnectRate, "connect-concurrency", 100, "subscribers connecting at once")
	flags.IntVar(&o.PID, "pid", 0, "the server's `pid`: report its CPU time and resident memory (Linux)")
	flags.BoolVar(&o.JSON, "json", false, "print the report as one JSON object instead of key=value lines")
	flags.Usage = func() {
		fmt.Fprintf(stderr, "Usage: herald bench [flags]\n\nConnects subscribers, publishes numbered messages and reports what arrived.\n\nFlags:\n")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Options{}, err
		}
		return Options{}, ErrUsage
	}
	switch {
	case flags.NArg() > 0:
		return Options{}, fmt.Errorf("bench: unexpected argument %q", flags.Arg(0))
	case o.Subscribers < 1, o.Messages < 1, o.Publishers < 1, o.ConnectRate < 1, o.Topics < 1:
		return Options{}, errors.New("bench: -subscribers, -messages, -publishers, -topics and -connect-concurrency must be at least 1")
	case o.Size < minPayload:
		return Options{}, fmt.Errorf("bench: -size must be at least %d bytes", minPayload)
	case o.Rate < 0:
		return Options{}, errors.New("bench: -rate must not be negative")
	}
	if _, err := newRoutes(o); err != nil {
		return Options{}, err
	}
	return o, nil
}

// run connects, publishes, waits and measures. A run in which publishes
// failed returns its report with the error.
func run(ctx context.Context, o Options, progress *progress) (*Report, error) {
	routes, err := newRoutes(o)
	if err != nil {
		return nil, err
	}
	report := &Report{Subscribers: o.Subscribers, Messages: o.Messages, Topics: routes.topics}
	server := newServerProbe(o.PID)
	rssBefore, err := server.rss()
	if err != nil {
		return nil, err
	}

	cpuBeforeConnect, err := server.cpu()
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	subs, connectTime, err := connectAll(ctx, o, routes, progress)
	defer func() {
		for _, s := range subs {
			s.conn.Close()
		}
	}()
	if err != nil {
		return nil, err
	}
	report.ConnectSeconds = connectTime.Seconds()
	if cpuAfterConnect, err := server.cpu(); err == nil && o.PID != 0 && len(subs) > 0 {
		report.ServerConnectCPUMicrosPerConnection = new((cpuAfterConnect - cpuBeforeConnect).Seconds() * 1e6 / float64(len(subs)))
	}
	if rssAfter, err := server.rss(); err == nil && o.PID != 0 {
		report.ServerRSSKiB = new(rssAfter)
		report.RSSPerConnectionKiB = new(float64(rssAfter-rssBefore) / float64(o.Subscribers))
	}

	readers := startReading(subs)
	defer readers.stop() // on an early return; a second stop does nothing
	cpuBefore, err := server.cpu()
	if err != nil {
		return nil, err
	}
	load := startLoadMeter()
	start := time.Now()
	acked, publishErr := publishAll(ctx, o, routes, progress)
	publishTime := time.Since(start)

	// Wait until every subscriber has all it should, or the wait runs out.
	select {
	case <-readers.done:
	case <-time.After(o.Wait):
	case <-ctx.Done():
	}
	cpuAfter, _ := server.cpu()
	report.LoadCPUBusy = load.busy()
	readers.stop()

	report.summarise(subs, acked, start, publishTime)
	if o.PID != 0 {
		cpuSeconds := (cpuAfter - cpuBefore).Seconds()
		report.ServerCPUSeconds = new(cpuSeconds)
		if report.Delivered > 0 {
			report.ServerCPUMicrosPerDelivery = new(cpuSeconds * 1e6 / float64(report.Delivered))
		}
	}
	if report.PublishFailures > 0 {
		if publishErr == nil { // never sent: the run was stopped
			publishErr = ctx.Err()
		}
		report.FirstPublishError = publishErr.Error()
		return report, fmt.Errorf("bench: %d of %d publishes failed; the first: %w", report.PublishFailures, o.Messages, publishErr)
	}
	return report, nil
}

// connectAll opens every subscriber, ConnectRate at a time.
func connectAll(ctx context.Context, o Options, routes routes, progress *progress) ([]*subscriber, time.Duration, error) {
	subs := make([]*subscriber, o.Subscribers)
	var (
		next      atomic.Int64
		connected atomic.Int64
		firstErr  error
		errOnce   sync.Once
		wg        sync.WaitGroup
	)
	start := time.Now()
	for range min(o.ConnectRate, o.Subscribers) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= o.Subscribers || ctx.Err() != nil {
					return
				}
				url, topic := routes.subscriber(i)
				conn, early, err := wsDial(ctx, url, 30*time.Second)
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("bench: subscriber %d: %w", i, err) })
					return
				}
				subs[i] = newSubscriber(conn, early, o.Messages, topic, routes.topics)
				progress.set("connected %d/%d", int(connected.Add(1)), o.Subscribers)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	opened := subs[:0]
	for _, s := range subs {
		if s != nil {
			opened = append(opened, s)
		}
	}
	return opened, elapsed, firstErr
}

// publishAll sends o.Messages messages, paced at o.Rate or as fast as
// o.Publishers go, and returns which the server acknowledged and why the
// first that failed did.
func publishAll(ctx context.Context, o Options, routes routes, progress *progress) ([]bool, error) {
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: o.Publishers, MaxConnsPerHost: o.Publishers},
	}
	defer client.CloseIdleConnections()
	seqs := make(chan int, o.Publishers)
	go func() {
		defer close(seqs)
		var tick *time.Ticker
		if o.Rate > 0 {
			tick = time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
			defer tick.Stop()
		}
		for seq := range o.Messages {
			if tick != nil {
				select {
				case <-tick.C:
				case <-ctx.Done():
					return
				}
			}
			select {
			case seqs <- seq:
			case <-ctx.Done():
				return
			}
		}
	}()
	acked := make([]bool, o.Messages) // each index written by one publisher
	var (
		count    atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	for p := range o.Publishers {
		wg.Go(func() {
			for seq := range seqs {
				err := publish(ctx, client, routes.publisher(p, seq), encodePayload(seq, time.Now(), o.Size))
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					continue
				}
				acked[seq] = true
				progress.set("published %d/%d", int(count.Add(1)), o.Messages)
			}
		})
	}
	wg.Wait()
	return acked, firstErr
}

// publish POSTs one message and returns why the server did not take it,
// if it did not.
func publish(ctx context.Context, client *http.Client, url string, payload []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var refused error
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		refused = readRefusal(resp)
	}
	io.Copy(io.Discard, resp.Body) // so that the connection is used again
	return refused
}

// progress writes one updating line to a terminal, and nothing otherwise.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	enabled bool
	last    time.Time
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	enabled := false
	if ok {
		if info, err := f.Stat(); err == nil && info.Mode()&os.ModeCharDevice != 0 {
			enabled = true
		}
	}
	return &progress{w: w, enabled: enabled}
}

func (p *progress) set(format string, args ...any) {
	if !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	fmt.Fprintf(p.w, "\r\033[K"+format, args...)
}

func (p *progress) done() {
	if p.enabled {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
