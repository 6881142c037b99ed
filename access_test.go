package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"herald/app"
	"herald/app/access"
	"herald/handlers"
)

// TestThreeClientsSeeExactlyWhatTheirScopesAllow runs three clients with
// different credentials against one server, over WebSocket, SSE and
// notify:
//   - a team member with a scoped token in the Authorization header, on a
//     WebSocket;
//   - CI with a JWT, publishing, and watching deploys over SSE;
//   - a dashboard with a read-only token in a cookie, as EventSource sends
//     it, over SSE.
//
// Clients without a token get nothing (anonymous: deny).
func TestThreeClientsSeeExactlyWhatTheirScopesAllow(t *testing.T) {
	t.Parallel()
	const jwtSecret = "e2e-jwt-secret-0123456789abcdefghij"
	h := startHerald(t, `security:
  anonymous: deny
  tokens:
    - name: team
      secret: team-token-5d2a
      read: ["team-*"]
      write: ["team-*"]
    - name: dashboard
      secret: dash-token-9c41
      read: [status, deploys]
  jwt:
    secret: `+jwtSecret+`
    audience: herald
`)
	ciJWT, err := access.Mint(jwtSecret, access.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "ci", Audience: jwt.ClaimStrings{"herald"}},
		Herald:           access.TopicClaims{Publish: []string{"deploys", "status"}, Subscribe: []string{"deploys"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	bearer := func(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }
	cookie := http.Header{"Cookie": {access.CookieName + "=dash-token-9c41"}}

	// Who may subscribe where, before any upgrade.
	subscriptions := []struct {
		who, path string
		header    http.Header
		want      int
	}{
		{"team on team-a", "/ws?topic=team-a", bearer("team-token-5d2a"), 101},
		{"team on deploys", "/ws?topic=deploys", bearer("team-token-5d2a"), 403},
		{"CI on deploys", "/ws?topic=deploys", bearer(ciJWT), 101},
		{"CI on status", "/ws?topic=status", bearer(ciJWT), 403},
		{"dashboard on status", "/ws?topic=status", cookie, 101},
		{"dashboard on team-a", "/ws?topic=team-a", cookie, 403},
		{"no token", "/ws?topic=status", nil, 401},
	}
	for _, s := range subscriptions {
		if _, status := dialWith(t, h.ws(s.path), s.header); status != s.want {
			t.Errorf("%s: %d, want %d", s.who, status, s.want)
		}
	}

	team, _ := dialWith(t, h.ws("/ws?topic=team-a"), bearer("team-token-5d2a"))
	ciDeploys := openEventsWith(t, h.Origin+"/events?topic=deploys", bearer(ciJWT))
	dashStatus := openEventsWith(t, h.Origin+"/events?topic=status", cookie)
	dashDeploys := openEventsWith(t, h.Origin+"/events?topic=deploys", cookie)

	// Who may publish where.
	publishes := []struct {
		who, topic, msg string
		header          http.Header
		want            int
	}{
		{"team to team-a", "team-a", "standup at ten", bearer("team-token-5d2a"), 200},
		{"team to deploys", "deploys", "forged deploy", bearer("team-token-5d2a"), 403},
		{"CI to deploys", "deploys", "v1.2.3 is live", bearer(ciJWT), 200},
		{"CI to team-a", "team-a", "CI in the team room", bearer(ciJWT), 403},
		{"CI to status", "status", "all green", bearer(ciJWT), 200},
		{"dashboard to status", "status", "dashboard writes", cookie, 403},
		{"no token to status", "status", "anonymous writes", nil, 401},
	}
	for _, p := range publishes {
		got := request(t, http.MethodPost, h.Origin+"/notify?topic="+p.topic, p.header, "msg="+p.msg)
		if got.status != p.want {
			t.Errorf("%s: %d %q, want %d", p.who, got.status, got.error, p.want)
		}
	}

	// Each sees exactly the messages allowed to it, in order: a refused
	// publish would show up here before the closing one.
	if got := readText(t, team); got != "standup at ten" {
		t.Errorf("team got %q", got)
	}
	if got := ciDeploys.next(t).Data; got != "v1.2.3 is live" {
		t.Errorf("CI's deploys stream got %q", got)
	}
	if got := dashDeploys.next(t).Data; got != "v1.2.3 is live" {
		t.Errorf("the dashboard's deploys stream got %q", got)
	}
	if got := dashStatus.next(t).Data; got != "all green" {
		t.Errorf("the dashboard's status stream got %q", got)
	}

	// No credential reaches the log or the metrics.
	metrics := request(t, http.MethodGet, h.Origin+"/metrics", nil, "")
	h.Stop(t)
	for _, secret := range []string{"team-token-5d2a", "dash-token-9c41", ciJWT, jwtSecret} {
		if strings.Contains(h.logs.String(), secret) || strings.Contains(metrics.body, secret) {
			t.Errorf("a credential reached the log or the metrics: %.12s…", secret)
		}
	}
}

// openEventsWith opens an event stream with extra headers.
func openEventsWith(t *testing.T, url string, header http.Header) *sseStream {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return &sseStream{resp: resp, lines: bufio.NewReader(resp.Body)}
}

// TestTokenCommandMintsAJWTTheServerAccepts follows the README: a secret
// in the environment, herald token for CI, and the server taking it for
// exactly the topics given.
func TestTokenCommandMintsAJWTTheServerAccepts(t *testing.T) {
	t.Parallel()
	const secret = "token-command-secret-0123456789abcdef"
	env := map[string]string{"HERALD_TEST_JWT_SECRET": secret}
	configYAML := "host: 127.0.0.1\nport: 0\nsecurity:\n  jwt:\n    secret: env:HERALD_TEST_JWT_SECRET\n    issuer: herald-test\n"
	h := startHeraldEnv(t, configYAML, env)

	var out, errOut strings.Builder
	args := []string{"-config", h.configPath, "token", "-sub", "ci", "-publish", "deploys, team-*", "-ttl", "1h"}
	if err := run(t.Context(), args, func(k string) string { return env[k] }, &out, &errOut); err != nil {
		t.Fatalf("herald token: %v\n%s", err, errOut.String())
	}
	token := strings.TrimSpace(out.String())
	for topic, want := range map[string]int{"deploys": 200, "team-x": 200, "status": 403} {
		got := request(t, http.MethodPost, h.Origin+"/notify?topic="+topic, http.Header{"Authorization": {"Bearer " + token}}, "msg=x")
		if got.status != want {
			t.Errorf("publish to %s: %d %s, want %d", topic, got.status, got.error, want)
		}
	}

	var check strings.Builder
	if err := run(t.Context(), []string{"check-config", h.configPath}, func(k string) string { return env[k] }, &check, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(check.String(), "# Clients without a token may neither subscribe nor publish (security.anonymous: auto).") {
		t.Errorf("check-config does not say what clients without a token may do:\n%s", check.String())
	}
	if strings.Contains(check.String(), secret) {
		t.Error("check-config printed the JWT secret")
	}
}

// TestCheckConfigSaysWhenNoClientCanDoSomething: a default that shuts out
// clients without a token, and no token to let anyone in, is a mistake
// worth one line.
func TestCheckConfigSaysWhenNoClientCanDoSomething(t *testing.T) {
	t.Parallel()
	for anonymous, want := range map[string]string{
		"read-only":  "# No token or JWT key is configured, so no client can publish.",
		"deny":       "# No token or JWT key is configured, so no client can subscribe or publish.",
		"read-write": "",
	} {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte("security:\n  anonymous: "+anonymous+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		if err := run(t.Context(), []string{"check-config", path}, func(string) string { return "" }, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(out.String(), "# No token or JWT key"); got != (want != "") || !strings.Contains(out.String(), want) {
			t.Errorf("anonymous: %s: check-config said\n%s\nwant %q", anonymous, out.String(), want)
		}
	}
}

// TestPageAsksForANewTokenWhenItsTokenExpires serves the routes on a
// frozen clock, so that the token is valid whenever the page connects, and
// its subscription is cut one real second later: the page says the token
// expired and asks for a new one. The test moves the clock only once the
// cut has come, so nothing depends on how fast the machine is.
func TestPageAsksForANewTokenWhenItsTokenExpires(t *testing.T) {
	t.Parallel()
	var frozen atomic.Int64
	start := time.Now().Truncate(time.Second)
	frozen.Store(start.UnixNano())
	clock := func() time.Time { return time.Unix(0, frozen.Load()) }

	cfg := app.DefaultConfig()
	cfg.Security.Tokens = []access.TokenConfig{{Name: "short", Secret: "short-token-7c1e", Read: []string{"*"},
		Expires: start.Add(time.Second).UTC().Format(time.RFC3339)}}
	hub, err := app.NewHub(app.HubOptions{MaxLagBytes: cfg.Limits.MaxLagBytes, MaxMessageBytes: cfg.Limits.MaxMessageBytes,
		HistorySize: cfg.History.Size, HistoryTTL: cfg.History.TTL, MaxTopics: cfg.Limits.MaxTopics})
	if err != nil {
		t.Fatal(err)
	}
	templates, _ := fs.Sub(assets, "templates")
	static, _ := fs.Sub(assets, "static")
	e, err := handlers.New(handlers.Options{Config: cfg, Hub: hub, Templates: templates, Static: static, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	server := httptest.NewServer(e)
	t.Cleanup(func() {
		hub.Shutdown(context.Background())
		server.Close()
	})

	tab := newTab(t)
	runIn(t, tab,
		chromedp.Navigate(server.URL+"/"),
		useToken("short-token-7c1e"),
		// One real second after connecting, the subscription is cut with
		// 4401, and the page asks for a new token. (Waiting for "live" in
		// between would race that second on a busy machine.)
		pollUntil(`document.getElementById("token-problem").textContent.includes("Your token expired")`),
		chromedp.WaitVisible("#token-form"),
	)
	if state := get(t, tab, chromedp.Evaluate[string](`document.body.dataset.state`)); state != "waiting" {
		t.Errorf("the page is %q after its token expired, want waiting", state)
	}
	// Trying the same token again, once the server's clock is past its
	// expiry, gets the server's own word for it.
	frozen.Store(start.Add(2 * time.Second).UnixNano())
	runIn(t, tab,
		chromedp.Click(`#token-form button[type="submit"]`),
		chromedp.WaitReady(`#access-summary.error`),
	)
	if summary := get(t, tab, chromedp.Text("#access-summary")); !strings.Contains(summary, `The token "short" expired at`) {
		t.Errorf("the Access card says %q", summary)
	}
}

// TestATokenNeverHasFewerRightsThanNoToken is the case a new user met:
// anyone may watch, a team's token covers team-*, and the team member
// watching deploys with that token was refused while anonymous curl was
// not. With the token, every route allows what it allows without one, and
// /access says the same; a token the server does not know is still
// refused.
func TestATokenNeverHasFewerRightsThanNoToken(t *testing.T) {
	t.Parallel()
	h := startHerald(t, `security:
  anonymous: read-only
  tokens:
    - {name: team, secret: team-token-31f7, read: ["team-*"], write: ["team-*"]}
    - {name: ci, secret: ci-token-8a02, write: [deploys]}
`)
	team := http.Header{"Authorization": {"Bearer team-token-31f7"}}
	ws, status := dialWith(t, h.ws("/ws?topic=deploys"), team)
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("WebSocket on deploys with the team token: %d, want 101 as without a token", status)
	}
	events := openEventsWith(t, h.Origin+"/events?topic=deploys", team)

	var reply struct {
		Read, Write []string
		Topic       struct{ Read, Write bool }
	}
	got := request(t, http.MethodGet, h.Origin+"/access?topic=deploys", team, "")
	if err := json.Unmarshal([]byte(got.body), &reply); err != nil || got.status != http.StatusOK {
		t.Fatalf("/access with the team token: %d %s", got.status, got.body)
	}
	if !reply.Topic.Read || reply.Topic.Write || !slices.Equal(reply.Read, []string{"*"}) || !slices.Equal(reply.Write, []string{"team-*"}) {
		t.Errorf("/access says the team token on deploys may %+v, with read %v and write %v", reply.Topic, reply.Read, reply.Write)
	}

	// Publishing to deploys is the CI token's; neither the team token nor
	// anyone without a token may.
	for who, want := range map[string]int{"team-token-31f7": 403, "": 401, "not-a-token": 401} {
		header := http.Header{}
		if who != "" {
			header.Set("Authorization", "Bearer "+who)
		}
		if got := request(t, http.MethodPost, h.Origin+"/notify?topic=deploys", header, "msg=forged"); got.status != want {
			t.Errorf("publish to deploys with %q: %d %s, want %d", who, got.status, got.error, want)
		}
	}
	if got := request(t, http.MethodPost, h.Origin+"/notify?topic=deploys", http.Header{"Authorization": {"Bearer ci-token-8a02"}}, "msg=v2 is live"); got.status != 200 {
		t.Fatalf("publish with the CI token: %d %s", got.status, got.error)
	}
	if got := readText(t, ws); got != "v2 is live" {
		t.Errorf("the team member's WebSocket got %q", got)
	}
	if got := events.next(t).Data; got != "v2 is live" {
		t.Errorf("the team member's event stream got %q", got)
	}
	if _, status := dialWith(t, h.ws("/ws?topic=deploys"), http.Header{"Authorization": {"Bearer not-a-token"}}); status != 401 {
		t.Errorf("WebSocket with an unknown token: %d, want 401", status)
	}
}

// TestPageWithAScopedTokenWatchesWhatAnyoneMay: someone who typed their
// team's token into the page of a topic anyone may watch is not told
// "Not allowed", and watches it.
func TestPageWithAScopedTokenWatchesWhatAnyoneMay(t *testing.T) {
	t.Parallel()
	h := startHerald(t, `security:
  anonymous: read-only
  tokens:
    - {name: team, secret: team-token-52c9, read: ["team-*"], write: ["team-*"]}
    - {name: ci, secret: ci-token-0d6e, write: [deploys]}
`)
	tab := newTab(t)
	runIn(t, tab,
		waitLive(h.URL+"?topic=deploys"),
		chromedp.Click("#change-token"),
		useToken("team-token-52c9"),
		// The card and the verdict on watching change in one step.
		waitFor(`document.getElementById("access-summary").textContent.includes("Token “team”")`),
	)
	status := get(t, tab, chromedp.Text("#status-text"))
	empty := get(t, tab, chromedp.Evaluate[string](`document.getElementById("empty").textContent`))
	if status == "Not allowed" || strings.Contains(empty, "cannot watch") {
		t.Fatalf("the page says %q and %q to a token that may watch deploys", status, empty)
	}
	runIn(t, tab, chromedp.WaitReady(`body[data-state="live"]`))
	if got := request(t, http.MethodPost, h.Origin+"/notify?topic=deploys", http.Header{"Authorization": {"Bearer ci-token-0d6e"}}, "msg=v3 is live"); got.status != 200 {
		t.Fatalf("publish with the CI token: %d %s", got.status, got.error)
	}
	runIn(t, tab, waitForMessage("v3 is live"))
	if says := get(t, tab, chromedp.Text("#publish-denied")); says != "The token “team” cannot publish to “deploys”." {
		t.Errorf("the page says %q about publishing", says)
	}
}
