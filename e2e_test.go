package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"

	"herald/app"
	"herald/app/history"
)

// browser is one headless Chromium shared by every end-to-end test; each
// test opens its own tabs in it.
var browser struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	err    error
}

// TestMain also fails the run if any goroutine outlives the tests: every
// server, connection reader and writer must have stopped.
func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		main() // a test runs Herald as its own process, to kill it
		return
	}
	code := m.Run()
	if browser.cancel != nil {
		browser.cancel()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines outlived the tests:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// newTab opens a tab in the shared browser, starting it on first use.
func newTab(t *testing.T) context.Context {
	t.Helper()
	browser.once.Do(func() {
		path := ""
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				path = p
				break
			}
		}
		if path == "" {
			browser.err = exec.ErrNotFound
			return
		}
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(path),
			chromedp.NoSandbox, // tests run as root in CI
			chromedp.DisableGPU,
			chromedp.WindowSize(1200, 860),
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
		)
		allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancelBrowser := chromedp.NewContext(allocCtx)
		browser.ctx = ctx
		browser.cancel = func() { cancelBrowser(); cancelAlloc() }
		browser.err = chromedp.Do(ctx) // starts the browser
	})
	if browser.err == exec.ErrNotFound {
		requireEnv(t, "Chromium (Debian package chromium)")
	}
	if browser.err != nil {
		t.Fatalf("start chromium: %v", browser.err)
	}
	// Each tab gets a browser context of its own, as a private window
	// would: cookies are kept per host, not per port, so tests whose
	// servers all run on 127.0.0.1 would otherwise see each other's.
	tab, cancel := chromedp.NewContext(browser.ctx, chromedp.WithNewBrowserContext())
	tab, cancelGuard := context.WithTimeout(tab, hangGuard)
	t.Cleanup(func() { cancelGuard(); cancel() })
	return tab
}

type step = chromedp.Action[chromedp.Void]

// runIn runs steps in the tab and fails the test on the first error.
func runIn(t *testing.T, tab context.Context, steps ...step) {
	t.Helper()
	if err := chromedp.Do(tab, steps...); err != nil {
		t.Fatal(err)
	}
}

// get runs one action in the tab and returns its value.
func get[T any](t *testing.T, tab context.Context, action chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(tab, action)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// waitLive opens url and waits until the page's WebSocket is open.
func waitLive(url string) step {
	return chromedp.Steps(
		chromedp.Navigate(url),
		chromedp.WaitReady(`body[data-state="live"]`),
	)
}

// waitForMessage waits until the page lists a message with exactly text.
func waitForMessage(text string) step {
	quoted, _ := json.Marshal(text)
	return pollUntil(fmt.Sprintf(`[...document.querySelectorAll("#messages .text")].some(e => e.textContent === %s)`, quoted))
}

// useToken enters token in the page's token form, as a user would.
func useToken(token string) step {
	return chromedp.Steps(
		chromedp.WaitVisible("#token-form"),
		chromedp.SendKeys("#token", token),
		chromedp.Click(`#token-form button[type="submit"]`),
	)
}

// pollUntil waits until a JavaScript expression is true in the tab.
func pollUntil(expression string) step {
	poll := chromedp.Poll[bool](expression)
	return chromedp.Func(func(ctx context.Context, target *chromedp.Target) error {
		_, err := poll(ctx, target)
		return err
	})
}

// disableScripts turns JavaScript off in the tab, as a browser without it.
func disableScripts() step {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		return err
	})
}

// screenshot saves the page when HERALD_SCREENSHOT_DIR is set, for people
// to look at.
func screenshot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	dir := os.Getenv("HERALD_SCREENSHOT_DIR")
	if dir == "" {
		return
	}
	png := get(t, tab, chromedp.FullScreenshot(100)) // quality 100 means PNG; below it, JPEG
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPageShowsMessagePublishedWithCurl(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	tab := newTab(t)
	runIn(t, tab, waitLive(h.URL))

	h.publish(t, "Hello from curl")
	runIn(t, tab, waitForMessage("Hello from curl"))
	count := get(t, tab, chromedp.Text("#received-count"))
	status := get(t, tab, chromedp.Text("#status-text"))
	timeText := get(t, tab, chromedp.Text("#messages li:first-child time"))
	if count != "1" || status != "Live" || timeText == "" {
		t.Errorf("count %q, status %q, time %q; want 1, Live and a time", count, status, timeText)
	}
}

func TestFormPublishesToThisPageAndEveryOther(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	publisher, watcher := newTab(t), newTab(t)
	runIn(t, publisher, waitLive(h.URL))
	runIn(t, watcher, waitLive(h.URL))

	for _, msg := range []string{"first from the form", "second from the form"} {
		runIn(t, publisher,
			chromedp.SendKeys("#msg", msg),
			chromedp.Click(`#publish-form button[type="submit"]`),
			waitForMessage(msg),
		)
		runIn(t, watcher, waitForMessage(msg))
	}
	result := get(t, publisher, chromedp.Text("#publish-result"))
	field := get(t, publisher, chromedp.Value("#msg"))
	newest := get(t, publisher, chromedp.Text("#messages li:first-child .text"))
	if result != "Published to 2 subscribers." || field != "" {
		t.Errorf("after publishing: result %q, field %q; want a receipt and an empty field", result, field)
	}
	if newest != "second from the form" {
		t.Errorf("newest message shown first is %q", newest)
	}
	screenshot(t, watcher, "page")
}

func TestPageShowsHTMLAsText(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	tab := newTab(t)
	runIn(t, tab, waitLive(h.URL))

	const hostile = `<img src=x onerror=alert(1)><b>bold?</b>`
	h.publish(t, hostile)
	runIn(t, tab, waitForMessage(hostile))
	elements := get(t, tab, chromedp.Evaluate[int](`document.querySelectorAll("#messages img, #messages b").length`))
	if elements != 0 {
		t.Errorf("the message became %d HTML elements", elements)
	}
}

func TestPageConnectsOnConfiguredPaths(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "paths:\n  page: /watch\n  ws: /live/socket\n  notify: /send\n  static: /assets\n")
	tab := newTab(t)
	runIn(t, tab, waitLive(h.URL))
	h.publishTo(t, "/send", "moved paths work")
	runIn(t, tab, waitForMessage("moved paths work"))

	runIn(t, tab,
		chromedp.SendKeys("#msg", "form on moved paths"),
		chromedp.Click(`#publish-form button[type="submit"]`),
		waitForMessage("form on moved paths"),
	)
}

func TestPageReconnectsAfterServerRestart(t *testing.T) {
	t.Parallel()
	config := fmt.Sprintf("host: 127.0.0.1\nport: %d\n", freePort(t))
	first := startHeraldEnv(t, config, nil)
	tab := newTab(t)
	runIn(t, tab, waitLive(first.URL))
	first.publish(t, "before the restart")
	runIn(t, tab, waitForMessage("before the restart"))

	first.Stop(t)
	runIn(t, tab, chromedp.WaitReady(`body[data-state="reconnecting"]`))
	second := startHeraldEnv(t, config, nil)
	runIn(t, tab, chromedp.WaitReady(`body[data-state="live"]`))
	second.publish(t, "after the restart")
	runIn(t, tab, waitForMessage("after the restart"), waitForMessage("before the restart"))
	// History was in memory, so the new server cannot vouch for what came
	// between; the page says so instead of pretending.
	notice := get(t, tab, chromedp.Text("#lost-notice"))
	if !strings.Contains(notice, "may be missing") {
		t.Errorf("after a restart without a history file the notice says %q", notice)
	}
}

// shownMessages is the page's list, oldest first.
func shownMessages(t *testing.T, tab context.Context) []string {
	t.Helper()
	return get(t, tab, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll("#messages .text")].map(e => e.textContent).reverse()`))
}

func TestPageKeepsAGapFreeListAcrossARestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	history := fmt.Sprintf("history:\n  file: %s\n", filepath.Join(dir, "history.db"))
	pageConfig := fmt.Sprintf("host: 127.0.0.1\nport: %d\n%s", freePort(t), history)

	first := startHeraldEnv(t, pageConfig, nil)
	tab := newTab(t)
	runIn(t, tab, waitLive(first.URL))
	first.publish(t, "m1")
	first.publish(t, "m2")
	runIn(t, tab, waitForMessage("m2"))
	first.Stop(t)
	runIn(t, tab, chromedp.WaitReady(`body[data-state="reconnecting"]`))

	// While the page cannot reach it, the server runs elsewhere on the same
	// history and takes three messages, then comes back where the page is.
	elsewhere := startHerald(t, history)
	for _, m := range []string{"m3", "m4", "m5"} {
		elsewhere.publish(t, m)
	}
	elsewhere.Stop(t)
	back := startHeraldEnv(t, pageConfig, nil)
	runIn(t, tab, chromedp.WaitReady(`body[data-state="live"]`))
	back.publish(t, "m6")
	runIn(t, tab, waitForMessage("m6"))

	if got := shownMessages(t, tab); strings.Join(got, " ") != "m1 m2 m3 m4 m5 m6" {
		t.Errorf("the page lists %q, want m1 to m6 once each, in order", got)
	}
	if count := get(t, tab, chromedp.Text("#received-count")); count != "6" {
		t.Errorf("received count %q, want 6", count)
	}
	if hidden := get(t, tab, chromedp.Evaluate[bool](`document.getElementById("lost-notice").hidden`)); !hidden {
		t.Error("the page warns of lost messages although none were lost")
	}
}

func TestPageServesAndSwitchesTopics(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	h.publishToTopic(t, "news", "kept before the page opened")
	newsSubscriber := dial(t, h.ws("/ws?topic=news"))
	tab := newTab(t)
	runIn(t, tab,
		chromedp.Navigate(h.URL),
		chromedp.WaitReady(`body[data-state="live"]`),
		chromedp.SetValue("#topic", "news"),
		chromedp.Submit("#topic-form"),
		chromedp.WaitReady(`body[data-topic="news"][data-state="live"]`),
		// The page opens with what the topic has kept.
		waitForMessage("kept before the page opened"),
	)
	h.publish(t, "for the default topic")
	h.publishToTopic(t, "news", "for news")
	runIn(t, tab, waitForMessage("for news"))
	if got := shownMessages(t, tab); strings.Join(got, "|") != "kept before the page opened|for news" {
		t.Errorf("the news page lists %q", got)
	}
	curl := get(t, tab, chromedp.TextContent("#curl-example"))
	if want := h.Origin + "/notify?topic=news&msg=HelloWorld"; curl != "curl '"+want+"'" {
		t.Errorf("curl example %q, want one for %s", curl, want)
	}
	runIn(t, tab,
		chromedp.SendKeys("#msg", "from the news form"),
		chromedp.Click(`#publish-form button[type="submit"]`),
		waitForMessage("from the news form"),
	)
	for _, want := range []string{"for news", "from the news form"} {
		if got := readText(t, newsSubscriber); got != want {
			t.Errorf("news subscriber got %q, want %q", got, want)
		}
	}
	screenshot(t, tab, "topic")
}

func TestFormWorksWithoutJavaScript(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	subscriber := dial(t, h.ws("/ws"))
	tab := newTab(t)
	runIn(t, tab,
		disableScripts(),
		chromedp.Navigate(h.URL),
		chromedp.SendKeys("#msg", "no script needed"),
	)
	// Subscribe before clicking, so the navigation the POST causes cannot
	// be missed.
	navigated := chromedp.Events(tab, page.FrameNavigated)
	runIn(t, tab, chromedp.Click(`#publish-form button[type="submit"]`))
	for ev, err := range navigated {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Frame.ParentID == "" { // the top frame
			if ev.Frame.URL != h.URL || ev.Frame.MimeType != "text/html" {
				t.Errorf("after posting, the browser shows %s (%s), want the page %s", ev.Frame.URL, ev.Frame.MimeType, h.URL)
			}
			break
		}
	}
	if got := readText(t, subscriber); got != "no script needed" {
		t.Errorf("subscriber got %q", got)
	}
}

func TestPageFitsAPhoneScreen(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	tab := newTab(t)
	runIn(t, tab, chromedp.EmulateViewport(360, 740), waitLive(h.URL))
	h.publish(t, strings.Repeat("a-long-unbroken-word-", 20))
	runIn(t, tab, waitForMessage(strings.Repeat("a-long-unbroken-word-", 20))) // the curl line is open, as it should be
	overflow := get(t, tab, chromedp.Evaluate[int](`document.documentElement.scrollWidth - window.innerWidth`))
	if overflow > 0 {
		t.Errorf("the page is %dpx wider than a 360px screen", overflow)
	}
}

// What a new user tripped on: at a phone's width the counts must not wrap
// into cramped columns, the curl line is open (as the README shows it), a
// message replayed from yesterday shows its date, and on a wide screen the
// message field is not squeezed into a side column.
func TestPageReadsWellOnAPhoneAndDatesOldMessages(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "history.db")
	yesterday := time.Now().Add(-30 * time.Hour)
	store, err := history.OpenBolt(file)
	if err != nil {
		t.Fatal(err)
	}
	old := &app.Message{ID: 1000, Topic: app.DefaultTopic, Time: yesterday, Text: "from yesterday"}
	if err := store.Append([]app.Commit{{Messages: []*app.Message{old}, SequenceStart: 1000, KeepFrom: 1000}}); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	h := startHerald(t, fmt.Sprintf("history:\n  ttl: 72h\n  file: %s\n", file))

	tab := newTab(t)
	runIn(t, tab, chromedp.EmulateViewport(390, 844), waitLive(h.URL), waitForMessage("from yesterday"))
	h.publish(t, "from today")
	runIn(t, tab, waitForMessage("from today"))

	if open := get(t, tab, chromedp.Evaluate[bool](`document.querySelector("details.terminal").open`)); !open {
		t.Error("the curl line is folded away")
	}
	// Counts that wrap make their line taller than one line of text.
	lines := get(t, tab, chromedp.Evaluate[float64](`(e => e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight))(document.querySelector(".counts"))`))
	if lines > 1.5 {
		t.Errorf("at 390px the watching and received counts take %.1f lines, want one", lines)
	}
	times := get(t, tab, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#messages time")].map(e => e.textContent)`))
	if len(times) != 2 {
		t.Fatalf("the page shows %d times, want 2", len(times))
	}
	// Newest first: today's time alone, yesterday's with its date.
	if year := fmt.Sprint(yesterday.Year()); !strings.Contains(times[1], year) || strings.Contains(times[0], year) {
		t.Errorf("times %q: want the date (with %s) on yesterday's message only", times, year)
	}

	runIn(t, tab, chromedp.EmulateViewport(1280, 900))
	if width := get(t, tab, chromedp.Evaluate[float64](`document.getElementById("msg").getBoundingClientRect().width`)); width < 500 {
		t.Errorf("at 1280px the message field is %.0fpx wide", width)
	}
}

func TestPageCountsWatchersAndWorksFromTheKeyboard(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	tab, other := newTab(t), newTab(t)
	runIn(t, tab, waitLive(h.URL), waitForText("#watchers", "1"))
	runIn(t, other, waitLive(h.URL))
	runIn(t, tab, waitForText("#watchers", "2"))
	runIn(t, other, chromedp.Navigate("about:blank"))
	runIn(t, tab, waitForText("#watchers", "1"))
	h.publish(t, "Deploy to eu-1 finished")
	h.publish(t, "Build #43 is green")
	// Screen readers hear each burst once, however many it holds.
	runIn(t, tab, waitFor(`document.getElementById("announcer").textContent.endsWith("Build #43 is green")`))

	// Keyboard only: focus the field, type, press Enter.
	runIn(t, tab,
		chromedp.Focus("#msg"),
		chromedp.SendKeys("#msg", "typed and sent with Enter\r"),
		waitForMessage("typed and sent with Enter"),
		// The message is read out once, through the polite live region.
		waitForText("#announcer", "New message: typed and sent with Enter"),
	)
	labelled := get(t, tab, chromedp.Evaluate[bool](
		`[...document.querySelectorAll("input:not([type=hidden])")].every(i => i.labels.length > 0)`))
	if !labelled {
		t.Error("an input has no label")
	}
	// The picture in the README: HERALD_SCREENSHOT_DIR=testdata.
	runIn(t, tab, waitForText("#received-count", "3")) // the curl line is open by default
	screenshot(t, tab, "page")
}

// waitForText waits until the element's text is exactly want.
func waitForText(selector, want string) step {
	sel, _ := json.Marshal(selector)
	text, _ := json.Marshal(want)
	return waitFor(fmt.Sprintf(`document.querySelector(%s)?.textContent === %s`, sel, text))
}

// waitFor waits until a JavaScript expression is true, checking it on every
// DOM change: requestAnimationFrame, the default, does not run in a tab
// that is not in front.
func waitFor(expression string) step {
	poll := chromedp.Poll[bool](expression, chromedp.WithPollingMutation())
	return chromedp.Func(func(ctx context.Context, target *chromedp.Target) error {
		_, err := poll(ctx, target)
		return err
	})
}

func TestPageAsksForATokenAndUsesIt(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "security:\n  tokens:\n    - {name: editor, secret: editor-token-1234, read: [\"*\"], write: [\"*\"]}\n")
	tab := newTab(t)
	runIn(t, tab,
		chromedp.Navigate(h.URL),
		chromedp.WaitVisible("#token-form"),
		chromedp.WaitReady(`body[data-state="waiting"]`),
	)
	if says := get(t, tab, chromedp.Text("#empty")); !strings.Contains(says, "Without a token, you cannot watch “default”") {
		t.Errorf("the page does not say why it is not watching: %q", says)
	}
	runIn(t, tab,
		useToken("editor-token-1234"),
		chromedp.WaitReady(`body[data-state="live"]`),
		chromedp.SendKeys("#msg", "published with a token\r"),
		waitForMessage("published with a token"),
	)
	if result := get(t, tab, chromedp.Text("#publish-result")); result != "Published to 1 subscriber." {
		t.Errorf("publish result %q", result)
	}
	if summary := get(t, tab, chromedp.Text("#access-summary")); !strings.Contains(summary, "Token “editor”") || !strings.Contains(summary, "every topic") {
		t.Errorf("the access card says %q", summary)
	}
	// The token stays in the cookie, never in the page's URL or the log.
	if url := get(t, tab, chromedp.Location()); strings.Contains(url, "token") {
		t.Errorf("the page URL holds a token: %s", url)
	}
	h.Stop(t)
	if logs := h.logs.String(); strings.Contains(logs, "token-1234") {
		t.Error("a token reached the log")
	}
}

func TestPageWithAReadOnlyTokenWatchesButIsToldItCannotPublish(t *testing.T) {
	t.Parallel()
	h := startHerald(t, `security:
  tokens:
    - {name: viewer, secret: viewer-token-1, read: ["team-*"]}
    - {name: ci, secret: ci-token-2, write: ["*"]}
`)
	tab := newTab(t)
	runIn(t, tab,
		chromedp.Navigate(h.URL+"?topic=team-a"),
		useToken("viewer-token-1"),
		chromedp.WaitReady(`body[data-state="live"]`),
		chromedp.WaitVisible("#publish-denied"),
	)
	if says := get(t, tab, chromedp.Text("#publish-denied")); says != "The token “viewer” cannot publish to “team-a”." {
		t.Errorf("the page says %q", says)
	}
	if disabled := get(t, tab, chromedp.Evaluate[bool](`document.getElementById("msg").disabled`)); !disabled {
		t.Error("the message field is enabled for a token that cannot publish")
	}
	got := request(t, http.MethodPost, h.Origin+"/notify?topic=team-a", http.Header{"Authorization": {"Bearer ci-token-2"}}, "msg=from CI")
	if got.status != 200 {
		t.Fatalf("publish with the CI token: %d %s", got.status, got.error)
	}
	runIn(t, tab, waitForMessage("from CI"))
	if summary := get(t, tab, chromedp.Text("#access-summary")); !strings.Contains(summary, "Token “viewer”") || !strings.Contains(summary, "team-*") {
		t.Errorf("the access card says %q", summary)
	}
}
