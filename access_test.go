package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
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
	"herald/app/config"
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
	server := serveShortTokenOnAFrozenClock(t, "short-token-7c1e")

	tab := newTab(t)
	runIn(t, tab,
		chromedp.Navigate(server.url+"/"),
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
	server.expire()
	runIn(t, tab,
		chromedp.Click(`#token-form button[type="submit"]`),
		chromedp.WaitReady(`#access-summary.error`),
	)
	if summary := get(t, tab, chromedp.Text("#access-summary")); !strings.Contains(summary, `The token "short" expired at`) {
		t.Errorf("the Access card says %q", summary)
	}
}

// frozenClockServer serves the routes on a clock that stands still until
// expire moves it past the one token's expiry.
type frozenClockServer struct {
	url    string
	expire func()
}

// serveShortTokenOnAFrozenClock serves the routes with a token, named
// short, that reads every topic and expires one second after the clock's
// frozen start: it is valid whenever a client connects, and a subscription
// is cut one real second later. The test moves the clock only once the
// cut has come, so nothing depends on how fast the machine is.
func serveShortTokenOnAFrozenClock(t *testing.T, secret string) *frozenClockServer {
	t.Helper()
	var frozen atomic.Int64
	start := time.Now().Truncate(time.Second)
	frozen.Store(start.UnixNano())
	clock := func() time.Time { return time.Unix(0, frozen.Load()) }

	cfg := config.Default()
	cfg.Security.Tokens = []access.TokenConfig{{Name: "short", Secret: secret, Read: []string{"*"},
		Expires: start.Add(time.Second).UTC().Format(time.RFC3339)}}
	hub, err := app.NewHub(app.HubOptions{MaxLagBytes: cfg.Limits.MaxLagBytes, MaxMessageBytes: cfg.Limits.MaxMessageBytes,
		HistorySize: cfg.History.Size, HistoryTTL: cfg.History.TTL, MaxTopics: cfg.Limits.MaxTopics})
	if err != nil {
		t.Fatal(err)
	}
	templates, _ := fs.Sub(assets, "templates")
	static, _ := fs.Sub(assets, "static")
	policy, err := access.NewPolicy(cfg.Security.Access(), clock)
	if err != nil {
		t.Fatal(err)
	}
	edge, err := handlers.NewServer(handlers.Options{Config: cfg, Node: app.NewNode(hub, app.NewMemoryBroker(hub)), Policy: policy, Templates: templates, Static: static, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	server := httptest.NewServer(edge.Handler())
	t.Cleanup(func() {
		hub.Shutdown(context.Background())
		server.Close()
		edge.Close()
	})
	return &frozenClockServer{url: server.URL, expire: func() { frozen.Store(start.Add(time.Hour).UnixNano()) }}
}

// readOnlyWithTeamAndCI is the server a new user met: anyone may watch,
// the team's token covers team-*, and CI's publishes to deploys.
const readOnlyWithTeamAndCI = `security:
  anonymous: read-only
  tokens:
    - {name: team, secret: team-token-31f7, read: ["team-*"], write: ["team-*"]}
    - {name: ci, secret: ci-token-8a02, write: [deploys]}
`

// TestATokenNeverHasFewerRightsThanNoToken: the team member watching
// deploys with the team's token was refused while anonymous curl was not.
// With the token, every route allows what it allows without one, and
// /access says the same; a token the server does not know is still
// refused.
func TestATokenNeverHasFewerRightsThanNoToken(t *testing.T) {
	t.Parallel()
	h := startHerald(t, readOnlyWithTeamAndCI)
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
	h := startHerald(t, readOnlyWithTeamAndCI)
	tab := newTab(t)
	runIn(t, tab,
		waitLive(h.URL+"?topic=deploys"),
		chromedp.Click("#change-token"),
		useToken("team-token-31f7"),
		// The card and the verdict on watching change in one step.
		waitFor(`document.getElementById("access-summary").textContent.includes("Token “team”")`),
	)
	status := get(t, tab, chromedp.Text("#status-text"))
	empty := get(t, tab, chromedp.Evaluate[string](`document.getElementById("empty").textContent`))
	if status == "Not allowed" || strings.Contains(empty, "cannot watch") {
		t.Fatalf("the page says %q and %q to a token that may watch deploys", status, empty)
	}
	runIn(t, tab, chromedp.WaitReady(`body[data-state="live"]`))
	if got := request(t, http.MethodPost, h.Origin+"/notify?topic=deploys", http.Header{"Authorization": {"Bearer ci-token-8a02"}}, "msg=v3 is live"); got.status != 200 {
		t.Fatalf("publish with the CI token: %d %s", got.status, got.error)
	}
	runIn(t, tab, waitForMessage("v3 is live"))
	if says := get(t, tab, chromedp.Text("#publish-denied")); says != "The token “team” cannot publish to “deploys”." {
		t.Errorf("the page says %q about publishing", says)
	}
}

// TestReadmeTokenExampleWorksAsWritten runs the README's herald token
// example as a user copies it, in a directory of their own: the config
// lines it shows, its export and its command, and a server on that config
// takes the token. Without those lines, and without any config file, the
// command names the line to add and the file to add it to.
func TestReadmeTokenExampleWorksAsWritten(t *testing.T) {
	configYAML, exportLine, commandLine := readmeTokenExample(t)
	secret, args := shellWords(t, exportLine, strings.TrimPrefix(commandLine, "herald "))
	env := map[string]string{"HERALD_JWT_SECRET": secret}
	getenv := func(k string) string { return env[k] }
	shipped, err := os.ReadFile("config.yaml")
	if err != nil {
		t.Fatal(err)
	}

	t.Chdir(t.TempDir()) // the command reads ./config.yaml, as the README's does
	if err := os.WriteFile("config.yaml", []byte(configYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	if err := run(t.Context(), args, getenv, &out, &errOut); err != nil {
		t.Fatalf("%s: %v\n%s", commandLine, err, errOut.String())
	}
	token := strings.TrimSpace(out.String())
	h := startHeraldEnv(t, "host: 127.0.0.1\nport: 0\n"+configYAML, env)
	bearer := http.Header{"Authorization": {"Bearer " + token}}
	if _, status := dialWith(t, h.ws("/ws?topic=team-x"), bearer); status != http.StatusSwitchingProtocols {
		t.Errorf("the minted token subscribing to team-x: %d", status)
	}
	if got := request(t, http.MethodPost, h.Origin+"/notify?topic=team-a", bearer, "msg=x"); got.status != 200 {
		t.Errorf("the minted token publishing to team-a: %d %s", got.status, got.error)
	}

	for _, tc := range []struct {
		name, givenConfig, expectError string
	}{
		{"givenTheShippedConfig", string(shipped),
			"token: config.yaml sets no security.jwt.secret to sign with: add the line security.jwt.secret: env:HERALD_JWT_SECRET to config.yaml (under security: and jwt:), and give the server the same HERALD_JWT_SECRET"},
		{"givenNoConfigFile", "",
			"token: there is no config.yaml, so no security.jwt.secret to sign with: create config.yaml with the line security.jwt.secret: env:HERALD_JWT_SECRET (under security: and jwt:), and give the server the same HERALD_JWT_SECRET"},
		{"givenTheLineWithoutTheVariable", configYAML,
			"config.yaml:3: security.jwt.secret: the environment variable HERALD_JWT_SECRET is not set or empty"},
	} {
		os.Remove("config.yaml")
		if tc.givenConfig != "" {
			if err := os.WriteFile("config.yaml", []byte(tc.givenConfig), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		withSecret := getenv
		if tc.name == "givenTheLineWithoutTheVariable" {
			withSecret = func(string) string { return "" }
		}
		err := run(t.Context(), args, withSecret, io.Discard, io.Discard)
		if err == nil || err.Error() != tc.expectError {
			t.Errorf("%s: got %v\nwant %s", tc.name, err, tc.expectError)
		}
	}
}

// readmeTokenExample is the README's herald token example: the YAML block
// just before the shell block that runs herald token, and that block's
// export and command lines, without their comments.
func readmeTokenExample(t *testing.T) (configYAML, exportLine, commandLine string) {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	command := strings.Index(readme, "\nherald token -sub ")
	if command < 0 {
		t.Fatal("the README has no herald token example")
	}
	shellStart := strings.LastIndex(readme[:command], "```sh\n")
	yamlStart := strings.LastIndex(readme[:shellStart], "```yaml\n")
	if shellStart < 0 || yamlStart < 0 {
		t.Fatal("the README's herald token example has no config block before it")
	}
	yamlBlock := readme[yamlStart+len("```yaml\n"):]
	configYAML = yamlBlock[:strings.Index(yamlBlock, "```")]
	shellBlock := readme[shellStart+len("```sh\n"):]
	for _, line := range strings.Split(shellBlock[:strings.Index(shellBlock, "```")], "\n") {
		line, _, _ = strings.Cut(line, " #")
		switch {
		case strings.HasPrefix(line, "export "):
			exportLine = strings.TrimSpace(line)
		case strings.HasPrefix(line, "herald token "):
			commandLine = strings.TrimSpace(line)
		}
	}
	if exportLine == "" || commandLine == "" {
		t.Fatalf("the README's herald token example lacks its export or its command:\n%s", shellBlock)
	}
	return configYAML, exportLine, commandLine
}

// shellWords runs export in sh, as a user's shell would, and returns the
// variable it sets and the words sh makes of args.
func shellWords(t *testing.T, export, args string) (string, []string) {
	t.Helper()
	name, _, _ := strings.Cut(strings.TrimPrefix(export, "export "), "=")
	script := export + "\nset -- " + args + "\nprintf '%s\\0' \"$" + name + "\" \"$@\""
	out, err := exec.Command("sh", "-c", script).Output()
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	words := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if words[0] == "" {
		t.Fatalf("%s set nothing", export)
	}
	return words[0], words[1:]
}

// TestPageRefusedATokenStopsAndSetsEarlierMessagesApart: a page that was
// watching, given a token that may not watch its topic, says so, stops
// watching, and does not leave what it showed before under "cannot
// watch" as if it were live.
func TestPageRefusedATokenStopsAndSetsEarlierMessagesApart(t *testing.T) {
	t.Parallel()
	h := startHerald(t, `security:
  tokens:
    - {name: viewer, secret: viewer-token-77aa, read: ["*"]}
    - {name: team, secret: team-token-77bb, read: ["team-*"]}
    - {name: ci, secret: ci-token-77cc, write: ["*"]}
`)
	ci := http.Header{"Authorization": {"Bearer ci-token-77cc"}}
	tab := newTab(t)
	runIn(t, tab,
		chromedp.Navigate(h.URL+"?topic=deploys"),
		useToken("viewer-token-77aa"),
		chromedp.WaitReady(`body[data-state="live"]`),
	)
	if got := request(t, http.MethodPost, h.Origin+"/notify?topic=deploys", ci, "msg=v4 is live"); got.status != 200 {
		t.Fatalf("publish: %d %s", got.status, got.error)
	}
	runIn(t, tab, waitForMessage("v4 is live"))

	// A watcher of our own sees the page leave.
	watcher, status := dialWith(t, h.ws("/ws?topic=deploys&format=json&presence=1"), http.Header{"Authorization": {"Bearer viewer-token-77aa"}})
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("watcher: %d", status)
	}
	if got := readText(t, watcher); got != `{"type":"presence","topic":"deploys","subscribers":2}` {
		t.Fatalf("the watcher's first frame: %s", got)
	}

	runIn(t, tab,
		chromedp.Click("#change-token"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("token").value = ""`),
		useToken("team-token-77bb"),
		waitFor(`document.getElementById("empty").textContent.includes("cannot watch")`),
	)
	shown := get(t, tab, chromedp.Evaluate[int](`document.querySelectorAll("#messages li").length`))
	setApart := get(t, tab, chromedp.Evaluate[string](
		`(n => n && !n.hidden && n.closest("section").querySelector("#messages").classList.contains("earlier") ? n.textContent : "")(document.getElementById("earlier-note"))`))
	if shown > 0 && setApart == "" {
		t.Errorf("the page shows %d earlier message(s) under \"cannot watch\" with nothing to set them apart", shown)
	}
	screenshot(t, tab, "page-refused-token")
	if got := readText(t, watcher); got != `{"type":"presence","topic":"deploys","subscribers":1}` {
		t.Fatalf("after the refusal, the watcher got %s, want the page gone", got)
	}
	if got := request(t, http.MethodPost, h.Origin+"/notify?topic=deploys", ci, "msg=v5 is live"); got.status != 200 || !strings.Contains(got.body, `"subscribers":1`) {
		t.Errorf("publish after the refusal: %d %s, want it handed to the watcher only", got.status, got.body)
	}
}

// TestTokenCommandOnAPublicKeyServerSaysWhereTokensComeFrom: a server
// that verifies with a public key cannot have its tokens signed here.
func TestTokenCommandOnAPublicKeyServerSaysWhereTokensComeFrom(t *testing.T) {
	t.Parallel()
	configFile := writeTempFile(t, "herald.yaml", "security:\n  jwt:\n    public_key_file: "+writePublicKeyFile(t)+"\n")
	err := run(t.Context(), []string{"token", "-config", configFile, "-sub", "ci", "-publish", "deploys"}, func(string) string { return "" }, io.Discard, io.Discard)
	if want := "token: " + configFile + " verifies JWTs with security.jwt.public_key_file, so tokens come from whoever holds its private key"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want %s...", err, want)
	}
}

// writeTempFile writes a file of its own for the test and returns its path.
func writeTempFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writePublicKeyFile writes a PEM public key, as security.jwt.public_key_file holds.
func writePublicKeyFile(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return writeTempFile(t, "jwt.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
}
