package main

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/backgroundservice"
	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/serviceworker"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// The page as an app: its manifest and icons, its service worker and the
// notifications it shows, the unread count in the title, and the "Notify
// me on this device" control.

// cdpCall runs one DevTools command in the tab and returns its result.
func cdpCall[P, R any](t *testing.T, tab context.Context, cmd cdp.Command[P, R], params P) R {
	t.Helper()
	r, err := chromedp.Call(tab, cmd, params)
	if err != nil {
		t.Fatalf("%s: %v", cmd.Method, err)
	}
	return r
}

// setNotifications answers the tab's notification permission for origin as
// a person answering the browser's prompt would.
func setNotifications(t *testing.T, tab context.Context, origin string, setting cdpbrowser.PermissionSetting) {
	t.Helper()
	runIn(t, tab) // opens the tab, and so its browser context, if it is not open yet
	_, err := chromedp.CallBrowser(tab, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
		Permission:       &cdpbrowser.PermissionDescriptor{Name: "notifications"},
		Setting:          setting,
		Origin:           origin,
		BrowserContextID: chromedp.FromContext(tab).BrowserContextID,
	})
	if err != nil {
		t.Fatalf("set the notification permission: %v", err)
	}
}

// evalAsync evaluates an expression that gives a promise and returns what
// the promise resolves to.
func evalAsync[T any](t *testing.T, tab context.Context, expression string) T {
	t.Helper()
	return get(t, tab, chromedp.Evaluate[T](expression, chromedp.EvalAwaitPromise))
}

// shownNotification is what a notification the page's service worker
// holds says.
type shownNotification struct {
	Title string `json:"title"`
	Body  string `json:"body"`
	Tag   string `json:"tag"`
	Topic string `json:"topic"`
	ID    string `json:"id"`
}

// notificationsOf lists the notifications that the service worker at scope
// holds, as the browser shows them.
const notificationsOf = `navigator.serviceWorker.getRegistration(%q).then(r => r ? r.getNotifications() : []).then(ns => ns.map(n => ({title: n.title, body: n.body, tag: n.tag, topic: n.data?.topic ?? "", id: String(n.data?.id ?? "")})))`

func shownNotifications(t *testing.T, tab context.Context, scope string) []shownNotification {
	t.Helper()
	return evalAsync[[]shownNotification](t, tab, fmt.Sprintf(notificationsOf, scope))
}

// watchNotifications starts recording the notifications the browser
// shows for the tab's site, as DevTools reports them, and returns the
// title and body of each as it is shown. Waiting on this rather than
// polling registration.getNotifications() matters: Chromium drops from
// that list a notification it is asked about while it is still being
// shown, so a test that polls loses one now and then.
func watchNotifications(t *testing.T, tab context.Context) <-chan [2]string {
	t.Helper()
	ctx, cancel := context.WithCancel(tab)
	t.Cleanup(cancel)
	events := chromedp.Events(ctx, backgroundservice.BackgroundServiceEventReceived)
	notifications := backgroundservice.ServiceNameNotifications
	cdpCall(t, tab, backgroundservice.StartObserving, backgroundservice.StartObservingParams{Service: notifications})
	cdpCall(t, tab, backgroundservice.SetRecording, backgroundservice.SetRecordingParams{Service: notifications, ShouldRecord: true})
	shown := make(chan [2]string)
	go func() {
		for ev, err := range events {
			if err != nil {
				return // the test is over
			}
			if e := ev.BackgroundServiceEvent; e.Service == notifications && e.EventName == "Notification displayed" {
				var title, body string
				for _, m := range e.EventMetadata {
					switch m.Key {
					case "Title":
						title = m.Value
					case "Body":
						body = m.Value
					}
				}
				select {
				case shown <- [2]string{title, body}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return shown
}

// waitForNotification waits until the browser shows a notification with
// this title and body.
func waitForNotification(t *testing.T, shown <-chan [2]string, title, body string) {
	t.Helper()
	timeout := time.After(hangGuard)
	for {
		select {
		case n := <-shown:
			if n == [2]string{title, body} {
				return
			}
		case <-timeout:
			t.Fatalf("the browser showed no notification %q: %q", title, body)
		}
	}
}

// waitForVisibility waits until the page's document.visibilityState is
// state, on the page's own visibilitychange event.
func waitForVisibility(t *testing.T, tab context.Context, state string) {
	t.Helper()
	evalAsync[bool](t, tab, fmt.Sprintf(`new Promise(resolve => {
		const check = () => { if (document.visibilityState === %q) resolve(true); };
		document.addEventListener("visibilitychange", check);
		check();
	})`, state))
}

// bringToFront makes the tab the active one of its window.
func bringToFront(t *testing.T, tab context.Context) {
	t.Helper()
	_, err := chromedp.CallBrowser(tab, target.ActivateTarget, target.ActivateTargetParams{TargetID: chromedp.FromContext(tab).Target.TargetID})
	if err != nil {
		t.Fatalf("activate the tab: %v", err)
	}
}

// serviceWorkerOf waits until the page's service worker at scope is active
// and returns its registration, as DevTools knows it.
func serviceWorkerOf(t *testing.T, tab context.Context, scope string) serviceworker.RegistrationID {
	t.Helper()
	runIn(t, tab, pollUntil(fmt.Sprintf(`navigator.serviceWorker.getRegistration(%q).then(r => r?.active?.state === "activated")`, scope)))
	ctx, cancel := context.WithCancel(tab)
	defer cancel()
	updates := chromedp.Events(ctx, serviceworker.WorkerRegistrationUpdated)
	cdpCall(t, tab, serviceworker.Enable, cdp.Empty{}) // DevTools then lists the registrations there are
	for ev, err := range updates {
		if err != nil {
			t.Fatalf("service worker registrations: %v", err)
		}
		for _, r := range ev.Registrations {
			if r.ScopeURL == scope && !r.IsDeleted {
				return r.RegistrationID
			}
		}
	}
	t.Fatalf("DevTools lists no service worker at %s", scope)
	return ""
}

// manifestFields are the manifest's members as the server wrote them;
// Chromium's parsed form leaves some out.
type manifestFields struct {
	Name            string `json:"name"`
	ShortName       string `json:"short_name"`
	StartURL        string `json:"start_url"`
	Display         string `json:"display"`
	ThemeColor      string `json:"theme_color"`
	BackgroundColor string `json:"background_color"`
	Icons           []struct {
		Src     string `json:"src"`
		Sizes   string `json:"sizes"`
		Type    string `json:"type"`
		Purpose string `json:"purpose"`
	} `json:"icons"`
}

// newProfileTab opens a tab in the browser's own profile rather than a
// private one, for what Chromium does not do in private windows, such as
// installing apps.
func newProfileTab(t *testing.T) context.Context {
	t.Helper()
	newTab(t) // starts the browser
	tab, cancel := chromedp.NewContext(browser.ctx)
	tab, cancelGuard := context.WithTimeout(tab, hangGuard)
	t.Cleanup(func() { cancelGuard(); cancel() })
	return tab
}

func TestPageIsInstallable(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "paths:\n  page: /watch\n  static: /assets\n")
	tab := newProfileTab(t)
	for _, c := range []struct {
		pageURL, manifestURL, startURL, name, shortName string
	}{
		{h.Origin + "/watch?topic=news", h.Origin + "/assets/manifest.webmanifest?topic=news", h.Origin + "/watch?topic=news", "news · Herald", "news"},
		{h.Origin + "/watch", h.Origin + "/assets/manifest.webmanifest", h.Origin + "/watch", "Herald", "Herald"},
	} {
		runIn(t, tab, waitLive(c.pageURL))
		got := cdpCall(t, tab, page.GetAppManifest, page.GetAppManifestParams{})
		if got.URL != c.manifestURL || len(got.Errors) != 0 || got.Manifest == nil {
			t.Fatalf("%s links the manifest %s with errors %+v; want %s without errors", c.pageURL, got.URL, got.Errors, c.manifestURL)
		}
		if m := got.Manifest; m.Name != c.name || m.StartURL != c.startURL {
			t.Errorf("%s: Chromium reads the name %q and start %q; want %q and %q", c.pageURL, m.Name, m.StartURL, c.name, c.startURL)
		}
		var m manifestFields
		if err := json.Unmarshal([]byte(got.Data), &m); err != nil {
			t.Fatalf("manifest %s: %v", got.Data, err)
		}
		if m.ShortName != c.shortName || m.Display != "standalone" || m.ThemeColor != "#4f46e5" || m.BackgroundColor != "#f6f7fb" {
			t.Errorf("%s: manifest short name %q, display %q, colours %q on %q; want %q, standalone, the page's accent on its background",
				c.pageURL, m.ShortName, m.Display, m.ThemeColor, m.BackgroundColor, c.shortName)
		}
		// Every icon loads, at the size the manifest says, and there is a
		// 192 and a 512 px one for any use.
		forAnyUse := map[string]bool{}
		for _, icon := range m.Icons {
			src, err := url.JoinPath(h.Origin, icon.Src)
			if err != nil || icon.Type != "image/png" {
				t.Fatalf("icon %+v", icon)
			}
			loaded := evalAsync[string](t, tab, fmt.Sprintf(`new Promise(resolve => {
				const icon = new Image();
				icon.onload = () => resolve(icon.naturalWidth + "x" + icon.naturalHeight);
				icon.onerror = () => resolve("an error");
				icon.src = %q;
			})`, src))
			if loaded != icon.Sizes {
				t.Errorf("icon %s loads as %s, want %s", src, loaded, icon.Sizes)
			}
			forAnyUse[icon.Sizes] = forAnyUse[icon.Sizes] || icon.Purpose == "any"
		}
		if !forAnyUse["192x192"] || !forAnyUse["512x512"] {
			t.Errorf("%s: icons %+v; want 192 and 512 px ones for any use", c.pageURL, m.Icons)
		}
		// Chromium's own verdict: nothing stops a person installing it.
		for _, p := range cdpCall(t, tab, page.GetInstallabilityErrors, cdp.Empty{}).InstallabilityErrors {
			t.Errorf("%s is not installable: %s %+v", c.pageURL, p.ErrorID, p.ErrorArguments)
		}
	}
}

// workerPage is the news page with notifications allowed and its service
// worker active.
type workerPage struct {
	h            *heraldProcess
	tab          context.Context
	scope        string // the worker's
	registration serviceworker.RegistrationID
	shown        <-chan [2]string // the notifications the browser shows from then on
}

// openWorkerPage starts a server with the static files at staticPath and
// opens its news page.
func openWorkerPage(t *testing.T, staticPath string) workerPage {
	t.Helper()
	h := startHerald(t, "paths:\n  static: "+staticPath+"\n")
	tab := newTab(t)
	setNotifications(t, tab, h.Origin, cdpbrowser.PermissionSettingGranted)
	runIn(t, tab, waitLive(h.URL+"?topic=news"))
	scope := h.Origin + staticPath + "/"
	registration := serviceWorkerOf(t, tab, scope)
	return workerPage{h: h, tab: tab, scope: scope, registration: registration, shown: watchNotifications(t, tab)}
}

func TestServiceWorkerShowsEachPushAsANotification(t *testing.T) {
	t.Parallel()
	// The worker's scope is the static files' folder, wherever it is: it
	// controls no page and sees no request.
	p := openWorkerPage(t, "/assets")
	h, tab, scope, shown := p.h, p.tab, p.scope, p.shown
	if controlled := get(t, tab, chromedp.Evaluate[bool](`navigator.serviceWorker.controller !== null`)); controlled {
		t.Error("the service worker controls the page")
	}

	push := func(topic, id, text string) {
		t.Helper()
		payload := fmt.Sprintf(`{"topic": %q, "id": %q, "text": %q, "time": "2025-01-02T03:04:05Z"}`, topic, id, text)
		cdpCall(t, tab, serviceworker.DeliverPushMessage, serviceworker.DeliverPushMessageParams{
			Origin: h.Origin, RegistrationID: p.registration, Data: payload,
		})
	}
	push("news", "41", "Deploy to eu-1 finished")
	waitForNotification(t, shown, "news", "Deploy to eu-1 finished")
	want := shownNotification{Title: "news", Body: "Deploy to eu-1 finished", Tag: "news", Topic: "news", ID: "41"}
	if got := shownNotifications(t, tab, scope); len(got) != 1 || got[0] != want {
		t.Fatalf("after one push the browser shows %+v, want %+v", got, want)
	}

	// A burst on one topic replaces its notification rather than stacking
	// them, and leaves the newest showing; another topic gets its own.
	push("news", "42", "Build #43 started")
	push("news", "43", "Build #43 is green")
	push("ops", "44", "Disk 91% full")
	waitForNotification(t, shown, "ops", "Disk 91% full")
	all := shownNotifications(t, tab, scope)
	got := map[string]shownNotification{}
	for _, n := range all {
		got[n.Tag] = n
	}
	if len(all) != 2 {
		t.Errorf("after pushes to two topics the browser shows %+v, want one notification per topic", all)
	}
	if n := got["news"]; n.Body != "Build #43 is green" || n.ID != "43" {
		t.Errorf("news shows %+v, want the newest push, 43", n)
	}
	if n := got["ops"]; n.Title != "ops" || n.Body != "Disk 91% full" || n.Topic != "ops" {
		t.Errorf("ops shows %+v", n)
	}
}

func TestTitleCountsUnreadMessagesWhileThePageIsHidden(t *testing.T) {
	t.Parallel()
	p := openWorkerPage(t, "/static")
	h, tab, scope, shown := p.h, p.tab, p.scope, p.shown
	if title := get(t, tab, chromedp.Title()); title != "news · Herald" {
		t.Fatalf("the page's title is %q", title)
	}

	// Another tab in the same window takes the front, as when a person
	// switches tabs: this page is then hidden.
	other, cancel := chromedp.NewContext(tab, chromedp.WithNewWindow(false))
	defer cancel()
	runIn(t, other, chromedp.Navigate("about:blank"))
	bringToFront(t, other)
	waitForVisibility(t, tab, "hidden")

	for _, msg := range []string{"first while away", "second while away", "third while away"} {
		h.publishToTopic(t, "news", msg)
	}
	runIn(t, tab, waitFor(`document.title === "(3) news · Herald"`))
	// Without push, the page itself shows each message as a notification,
	// one per topic, the newest.
	waitForNotification(t, shown, "news", "third while away")
	if got := shownNotifications(t, tab, scope); len(got) != 1 || got[0].Body != "third while away" || got[0].Tag != "news" {
		t.Errorf("after three messages while hidden the browser shows %+v, want the newest, tagged news", got)
	}

	bringToFront(t, tab)
	waitForVisibility(t, tab, "visible")
	runIn(t, tab, waitFor(`document.title === "news · Herald"`))
	h.publishToTopic(t, "news", "seen as it came")
	runIn(t, tab, waitForMessage("seen as it came"))
	if title := get(t, tab, chromedp.Title()); title != "news · Herald" {
		t.Errorf("while the page is in front, a new message makes the title %q", title)
	}
}

func TestNotifyMeSaysWhenTheServerSendsNoNotifications(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	tab := newTab(t)
	runIn(t, tab,
		waitLive(h.URL+"?topic=news"),
		chromedp.WaitVisible("#notify-toggle"),
		chromedp.Click("#notify-toggle"),
		waitFor(`document.getElementById("notify-state").textContent !== ""`),
	)
	says := get(t, tab, chromedp.Text("#notify-state"))
	if !strings.Contains(says, "This server does not send notifications") {
		t.Errorf("with push off, the page says %q", says)
	}
	// It asks for the permission only when it could use it.
	if permission := get(t, tab, chromedp.Evaluate[string](`Notification.permission`)); permission != "default" {
		t.Errorf("the page asked for the notification permission (%s) although the server sends none", permission)
	}
	screenshot(t, tab, "notify-off")
}

func TestNotifyMeSaysWhenTheBrowserCannot(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	tab := newTab(t)
	// A browser without the Push API, as some still are.
	cdpCall(t, tab, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `delete window.PushManager;`})
	runIn(t, tab, waitLive(h.URL+"?topic=news"), waitFor(`document.getElementById("notify-state").textContent !== ""`))
	says := get(t, tab, chromedp.Text("#notify-state"))
	if !strings.Contains(says, "This browser cannot") {
		t.Errorf("without the Push API, the page says %q", says)
	}
	if disabled := get(t, tab, chromedp.Evaluate[bool](`document.getElementById("notify-toggle").disabled`)); !disabled {
		t.Error("the control is offered in a browser that cannot use it")
	}
}

// startPushHerald starts Herald with Web Push on, sending only to the
// push services that endpoints lists as URL prefixes.
func startPushHerald(t *testing.T, endpoints string) *heraldProcess {
	t.Helper()
	return startHerald(t, fmt.Sprintf("push:\n  enabled: true\n  subject: mailto:ops@example.com\n  key_file: %s\n  endpoints: [%s]\n",
		filepath.Join(t.TempDir(), "push-key.json"), endpoints))
}

// clickNotifyMe opens h's news page, with the notification permission
// answered as setting and, if standIn, the stand-in push service, and
// clicks "Notify me on this device".
func clickNotifyMe(t *testing.T, h *heraldProcess, setting cdpbrowser.PermissionSetting, standIn bool) context.Context {
	t.Helper()
	tab := newTab(t)
	setNotifications(t, tab, h.Origin, setting)
	if standIn {
		cdpCall(t, tab, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: standInPushService(t)})
	}
	runIn(t, tab,
		waitLive(h.URL+"?topic=news"),
		chromedp.WaitVisible("#notify-toggle"),
		chromedp.Click("#notify-toggle"),
	)
	return tab
}

func TestNotifyMeSaysWhenNotificationsAreBlocked(t *testing.T) {
	t.Parallel()
	h := startPushHerald(t, "https://push.example.net/")
	tab := clickNotifyMe(t, h, cdpbrowser.PermissionSettingDenied, false)
	runIn(t, tab, waitFor(`document.getElementById("notify-state").textContent !== ""`))
	if says := get(t, tab, chromedp.Text("#notify-state")); !strings.Contains(says, "Notifications are blocked for this site") {
		t.Errorf("with notifications blocked, the page says %q", says)
	}
	if n := metric(t, h, "herald_push_subscriptions"); n != 0 {
		t.Errorf("the page registered although notifications are blocked: %v subscriptions", n)
	}
}

// standInPushService replaces the browser's push service, which
// registers with Google's servers and so cannot be reached from the test
// machine, by one that answers at once with a subscription of real keys,
// keeping it in localStorage as the browser keeps its own. Everything else
// is Chromium's (the permission, the service worker, the requests) and
// Herald's (its push routes).
func standInPushService(t *testing.T) string {
	t.Helper()
	device, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	return fmt.Sprintf(`(() => {
	const saved = "stand-in-push-subscription";
	const subscription = (key) => ({
		endpoint: "https://push.example.net/send/device-1",
		options: { userVisibleOnly: true, applicationServerKey: key.buffer },
		toJSON() { return { endpoint: this.endpoint, expirationTime: null, keys: { p256dh: %q, auth: %q } }; },
		async unsubscribe() { localStorage.removeItem(saved); return true; },
	});
	PushManager.prototype.subscribe = async function (options) {
		const key = new Uint8Array(options.applicationServerKey);
		localStorage.setItem(saved, JSON.stringify([...key]));
		return subscription(key);
	};
	PushManager.prototype.getSubscription = async function () {
		const key = JSON.parse(localStorage.getItem(saved));
		return key === null ? null : subscription(Uint8Array.from(key));
	};
})();`, base64.RawURLEncoding.EncodeToString(device.PublicKey().Bytes()), base64.RawURLEncoding.EncodeToString(auth))
}

func TestNotifyMeRegistersThisDeviceAndTurnsItOff(t *testing.T) {
	t.Parallel()
	h := startPushHerald(t, "https://push.example.net/")
	tab := clickNotifyMe(t, h, cdpbrowser.PermissionSettingGranted, true)
	runIn(t, tab, waitForText("#notify-toggle", "Stop notifications"))
	if n := metric(t, h, "herald_push_subscriptions"); n != 1 {
		t.Fatalf("turning notifications on left %v subscriptions on the server, want 1", n)
	}
	if says := get(t, tab, chromedp.Text("#notify-state")); !strings.HasPrefix(says, "On: this device shows each new message in “news”") {
		t.Errorf("once on, the page says %q", says)
	}
	screenshot(t, tab, "notify-on")
	checkAccessibility(t, tab, "the page with notifications on")

	// The page remembers, and turns it off for this topic alone.
	runIn(t, tab,
		waitLive(h.URL+"?topic=news"),
		waitForText("#notify-toggle", "Stop notifications"),
		chromedp.Click("#notify-toggle"),
		waitForText("#notify-toggle", "Notify me on this device"),
	)
	if n := metric(t, h, "herald_push_subscriptions"); n != 0 {
		t.Fatalf("turning notifications off left %v subscriptions on the server, want none", n)
	}
	if subscribed := get(t, tab, chromedp.Evaluate[bool](`localStorage.getItem("stand-in-push-subscription") !== null`)); subscribed {
		t.Error("with no topic left, the browser's push subscription is still there")
	}
}

func TestNotifyMeSaysWhenTheServerRefusesThePushService(t *testing.T) {
	t.Parallel()
	h := startPushHerald(t, "https://push.elsewhere.example/") // not the browser's push service
	tab := clickNotifyMe(t, h, cdpbrowser.PermissionSettingGranted, true)
	runIn(t, tab, waitFor(`document.getElementById("notify-state").classList.contains("error")`))
	if says := get(t, tab, chromedp.Text("#notify-state")); says != "This server does not send notifications to this browser's push service." {
		t.Errorf("when the server refuses the push service, the page says %q", says)
	}
	if on := get(t, tab, chromedp.Text("#notify-toggle")); on != "Notify me on this device" {
		t.Errorf("after the refusal the control reads %q", on)
	}
	if subscribed := get(t, tab, chromedp.Evaluate[bool](`localStorage.getItem("stand-in-push-subscription") !== null`)); subscribed {
		t.Error("the refused push subscription is kept")
	}
}

// axeCore is where the accessibility checker axe-core is found: its npm
// package in the repository's node_modules, which .ci/run installs.
const axeCore = "node_modules/axe-core/axe.min.js"

// axeViolation is one rule axe-core found broken, with where.
type axeViolation struct {
	ID      string     `json:"id"`
	Impact  string     `json:"impact"`
	Help    string     `json:"help"`
	Targets [][]string `json:"targets"`
}

// checkAccessibility runs axe-core on the page as it is now, against WCAG
// 2.1 A and AA and axe's best practices, and fails the test for each
// violation.
func checkAccessibility(t *testing.T, tab context.Context, what string) {
	t.Helper()
	source, err := os.ReadFile(axeCore)
	if errors.Is(err, fs.ErrNotExist) {
		requireEnv(t, "axe-core (npm install --no-save --no-package-lock axe-core@4.14.1)")
	}
	if err != nil {
		t.Fatal(err)
	}
	// DevTools puts the checker in the page; the page's own policy allows
	// no script from anywhere but the server.
	get(t, tab, chromedp.Evaluate[chromedp.Void](string(source)))
	violations := evalAsync[[]axeViolation](t, tab, `axe.run(document, {runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]})
		.then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map(n => n.target.map(String))})))`)
	for _, v := range violations {
		t.Errorf("%s: axe-core: %s (%s, %s) at %v", what, v.Help, v.ID, v.Impact, v.Targets)
	}
}

func TestPageHasNoAccessibilityViolations(t *testing.T) {
	t.Parallel()
	h := startHerald(t, `security:
  anonymous: read-only
  tokens:
    - {name: ci, secret: ci-token-1234, write: ["*"]}
`)
	tab := newTab(t)
	runIn(t, tab, waitLive(h.URL+"?topic=news"), chromedp.WaitVisible("#publish-denied"))
	h.publishToTopicWith(t, "news", "Deploy to eu-1 finished", http.Header{"Authorization": {"Bearer ci-token-1234"}})
	runIn(t, tab, waitForMessage("Deploy to eu-1 finished"))
	checkAccessibility(t, tab, "the page watching a topic")

	// The token form open, and the notification control saying why it
	// cannot.
	runIn(t, tab,
		chromedp.Click("#change-token"),
		chromedp.WaitVisible("#token-form"),
		chromedp.Click("#notify-toggle"),
		waitFor(`document.getElementById("notify-state").classList.contains("error")`),
	)
	checkAccessibility(t, tab, "the page with its token form and a refusal")
}
