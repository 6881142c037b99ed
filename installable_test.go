package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
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

// evalAsync evaluates an expression that gives a promise and returns what
// the promise resolves to.
func evalAsync[T any](t *testing.T, tab context.Context, expression string) T {
	t.Helper()
	return get(t, tab, chromedp.Evaluate[T](expression, chromedp.EvalAwaitPromise))
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
