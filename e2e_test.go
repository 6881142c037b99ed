package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"
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
	tab, cancel := chromedp.NewContext(browser.ctx)
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
	poll := chromedp.Poll[bool](
		fmt.Sprintf(`[...document.querySelectorAll("#messages .text")].some(e => e.textContent === %s)`, quoted))
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
	runIn(t, tab, waitForMessage(strings.Repeat("a-long-unbroken-word-", 20)), chromedp.Click(`details.terminal summary`))
	overflow := get(t, tab, chromedp.Evaluate[int](`document.documentElement.scrollWidth - window.innerWidth`))
	if overflow > 0 {
		t.Errorf("the page is %dpx wider than a 360px screen", overflow)
	}
}
