package handlers

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	gorilla "github.com/gorilla/websocket"

	"herald/app"
	"herald/app/access"
	"herald/app/config"
	"herald/handlers/ws"
)

const testJWTSecret = "handlers-test-secret-0123456789abcdef"

// frozenClock is a clock that stands still until the test moves it, so
// that a credential is valid when the test connects however slow the
// machine is, and the subscription's expiry timer runs from then.
type frozenClock struct{ at atomic.Int64 }

func newFrozenClock(t time.Time) *frozenClock {
	c := &frozenClock{}
	c.at.Store(t.UnixNano())
	return c
}

func (c *frozenClock) now() time.Time               { return time.Unix(0, c.at.Load()) }
func (c *frozenClock) set(t time.Time)              { c.at.Store(t.UnixNano()) }
func (c *frozenClock) add(d time.Duration)          { c.set(c.now().Add(d)) }
func (c *frozenClock) in(d time.Duration) time.Time { return c.now().Add(d) }

// startAccessServer serves Herald's routes over real HTTP with security
// set by configure and the given clock.
func startAccessServer(t *testing.T, clock *frozenClock, configure func(*config.Security)) *httptest.Server {
	t.Helper()
	cfg := config.Default()
	configure(&cfg.Security)
	hub, err := app.NewHub(app.HubOptions{
		MaxLagBytes: 1 << 20, MaxMessageBytes: cfg.Limits.MaxMessageBytes,
		HistorySize: cfg.History.Size, HistoryTTL: cfg.History.TTL, MaxTopics: cfg.Limits.MaxTopics,
	})
	if err != nil {
		t.Fatal(err)
	}
	policy, err := access.NewPolicy(cfg.Security.Access(), clock.now)
	if err != nil {
		t.Fatal(err)
	}
	edge, err := NewServer(Options{Config: cfg, Node: app.NewNode(hub, app.NewMemoryBroker(hub)), Policy: policy, Templates: os.DirFS("../templates"), Static: os.DirFS("../static"), Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	server := httptest.NewServer(edge.Handler())
	t.Cleanup(func() {
		hub.Shutdown(context.Background()) // ends the subscriptions, so that Close does not wait on them
		server.Close()
		edge.Close()
	})
	return server
}

func TestSubscriptionsEndWhenTheirCredentialExpires(t *testing.T) {
	t.Parallel()
	clock := newFrozenClock(time.Now())
	expires := clock.in(time.Second).Truncate(time.Second) // JWT times are whole seconds
	if expires.Before(clock.in(500 * time.Millisecond)) {
		expires = expires.Add(time.Second)
	}
	server := startAccessServer(t, clock, func(s *config.Security) {
		s.Tokens = []access.TokenConfig{{Name: "short", Secret: "short-lived", Read: []string{"*"}, Expires: expires.Format(time.RFC3339)}}
		s.JWT.Secret = testJWTSecret
	})
	bearer := func(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }
	jwtToken, err := access.Mint(testJWTSecret, access.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "sse-user", ExpiresAt: jwt.NewNumericDate(expires)},
		Herald:           access.TopicClaims{Subscribe: []string{"news"}},
	})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("WebSocket", func(t *testing.T) {
		t.Parallel()
		conn, _, err := gorilla.DefaultDialer.Dial("ws"+strings.TrimPrefix(server.URL, "http")+"/ws?topic=news", bearer("short-lived"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetReadDeadline(time.Now().Add(time.Minute)) // a hang guard, not a threshold
		_, _, err = conn.ReadMessage()
		var closed *gorilla.CloseError
		if !errors.As(err, &closed) || closed.Code != ws.CloseCredentialExpired || closed.Text != "token expired" {
			t.Fatalf("the connection ended with %v, want close %d \"token expired\"", err, ws.CloseCredentialExpired)
		}
	})
	t.Run("SSE", func(t *testing.T) {
		t.Parallel()
		req, _ := http.NewRequest(http.MethodGet, server.URL+"/events?topic=news", nil)
		req.Header = bearer(jwtToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("events: %d", resp.StatusCode)
		}
		lines := bufio.NewScanner(resp.Body)
		var last []string
		for lines.Scan() {
			last = append(last, lines.Text())
		}
		stream := strings.TrimSpace(strings.Join(last, "\n"))
		if !strings.HasSuffix(stream, "event: expired\ndata: {\"type\":\"expired\",\"topic\":\"news\"}") {
			t.Fatalf("the stream did not end with an expired event:\n%s", stream)
		}
	})
}

func TestExpiredAndMissingCredentialsGetRFC6750Answers(t *testing.T) {
	t.Parallel()
	clock := newFrozenClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	server := startAccessServer(t, clock, func(s *config.Security) {
		// A token that may write makes auto refuse publishing to clients
		// without a token, and so to the reader's token too.
		s.Tokens = []access.TokenConfig{
			{Name: "reader", Secret: "reader-secret", Read: []string{"news"}, Expires: "2026-11-26"},
			{Name: "ci", Secret: "ci-secret", Write: []string{"news"}},
		}
	})
	get := func(path, token string) (*http.Response, errorResponse) {
		req, _ := http.NewRequest(http.MethodGet, server.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body errorResponse
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp, body
	}
	tests := []struct {
		name, path, token string
		status            int
		code, challenge   string
	}{
		{"no token", "/events?topic=news", "", 401, "token_required", `Bearer realm="herald"`},
		{"unknown token", "/events?topic=news", "nope", 401, "invalid_token", `error="invalid_token"`},
		{"outside the scope", "/events?topic=sports", "reader-secret", 403, "insufficient_scope", `error="insufficient_scope"`},
		{"publishing with a read token", "/notify?topic=news&msg=x", "reader-secret", 403, "insufficient_scope", `error="insufficient_scope"`},
	}
	for _, tt := range tests {
		resp, body := get(tt.path, tt.token)
		if resp.StatusCode != tt.status || body.Code != tt.code || !strings.Contains(resp.Header.Get("WWW-Authenticate"), tt.challenge) {
			t.Errorf("%s: %d %q %q, WWW-Authenticate %q", tt.name, resp.StatusCode, body.Code, body.Error, resp.Header.Get("WWW-Authenticate"))
		}
	}

	clock.add(24 * time.Hour)
	resp, body := get("/events?topic=news", "reader-secret")
	if resp.StatusCode != 401 || body.Code != "token_expired" || !strings.Contains(body.Error, "expired at 2026-11-26T00:00:00Z") ||
		!strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("an expired token: %d %+v, WWW-Authenticate %q", resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
	}
	resp, body = get("/access", "reader-secret")
	if resp.StatusCode != 401 || body.Code != "token_expired" {
		t.Errorf("the access route with an expired token: %d %+v", resp.StatusCode, body)
	}
}

func TestAccessRouteSaysWhatACredentialMayDo(t *testing.T) {
	t.Parallel()
	server := startAccessServer(t, newFrozenClock(time.Now()), func(s *config.Security) {
		s.Anonymous = access.AnonymousReadOnly
		s.Tokens = []access.TokenConfig{{Name: "team", Secret: "team-secret", Read: []string{"team-*"}, Write: []string{"team-a"}}}
	})
	read := func(token, topic string) accessReply {
		req, _ := http.NewRequest(http.MethodGet, server.URL+"/access?topic="+topic, nil)
		if token != "" {
			// As the page sends it: URL-encoded in the cookie.
			req.AddCookie(&http.Cookie{Name: access.CookieName, Value: token})
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var reply accessReply
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&reply) != nil {
			t.Fatalf("access: %d", resp.StatusCode)
		}
		return reply
	}
	team := read("team-secret", "team-b")
	if team.Name != "team" || team.Kind != "token" || !team.TokensAccepted ||
		team.Topic == nil || !team.Topic.Read || team.Topic.Write {
		t.Errorf("the team token on team-b: %+v %+v", team, team.Topic)
	}
	anonymous := read("", "team-a")
	if anonymous.Kind != "anonymous" || !anonymous.Topic.Read || anonymous.Topic.Write {
		t.Errorf("no token on team-a: %+v %+v", anonymous, anonymous.Topic)
	}
	// Anyone may read deploys, so the team token may too, and its lists
	// say so: what the route answers is what the other routes do.
	deploys := read("team-secret", "deploys")
	if deploys.Topic == nil || !deploys.Topic.Read || deploys.Topic.Write ||
		!slices.Equal(deploys.Read, []string{"*"}) || !slices.Equal(deploys.Write, []string{"team-a"}) {
		t.Errorf("the team token on deploys: %+v %+v", deploys, deploys.Topic)
	}
	for action, path := range map[string]string{"subscribe": "/events?topic=deploys", "publish": "/notify?topic=deploys&msg=x"} {
		req, _ := http.NewRequest(http.MethodGet, server.URL+path, nil)
		req.AddCookie(&http.Cookie{Name: access.CookieName, Value: "team-secret"})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[string]int{"subscribe": 200, "publish": 403}[action]; resp.StatusCode != want {
			t.Errorf("%s to deploys with the team token: %d, want %d as /access says", action, resp.StatusCode, want)
		}
	}
}

// TestACredentialInTheRequestOutranksTheCookie: a request that names its
// credential (the Authorization header, else ?token=) is answered for
// that one, even from a browser whose cookie holds another; and the
// README lists the three places in the order they are taken.
func TestACredentialInTheRequestOutranksTheCookie(t *testing.T) {
	t.Parallel()
	server := startAccessServer(t, newFrozenClock(time.Now()), func(s *config.Security) {
		s.Tokens = []access.TokenConfig{
			{Name: "header", Secret: "header-secret", Read: []string{"*"}},
			{Name: "query", Secret: "query-secret", Read: []string{"*"}},
			{Name: "cookie", Secret: "cookie-secret", Read: []string{"*"}},
		}
	})
	tests := []struct {
		name                  string
		header, query, cookie bool
		expect                string
	}{
		{"givenAllThree", true, true, true, "header"},
		{"givenTheQueryAndTheCookie", false, true, true, "query"},
		{"givenTheHeaderAndTheCookie", true, false, true, "header"},
		{"givenOnlyTheCookie", false, false, true, "cookie"},
	}
	for _, tt := range tests {
		url := server.URL + "/access"
		if tt.query {
			url += "?token=query-secret"
		}
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if tt.header {
			req.Header.Set("Authorization", "Bearer header-secret")
		}
		if tt.cookie {
			req.AddCookie(&http.Cookie{Name: access.CookieName, Value: "cookie-secret"})
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var reply accessReply
		err = json.NewDecoder(resp.Body).Decode(&reply)
		resp.Body.Close()
		if err != nil || reply.Name != tt.expect {
			t.Errorf("%s: answered for %q (%v), want %q", tt.name, reply.Name, err, tt.expect)
		}
	}

	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "### Sending a credential")
	var places []string
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, "###") {
			break
		}
		for _, place := range []string{"`Authorization: Bearer TOKEN`", "`?token=TOKEN`", "the cookie `herald_token`"} {
			if strings.HasPrefix(line, "| "+place) {
				places = append(places, place)
			}
		}
	}
	if want := []string{"`Authorization: Bearer TOKEN`", "`?token=TOKEN`", "the cookie `herald_token`"}; !slices.Equal(places, want) {
		t.Errorf("the README lists the places to send a credential as %q, want the order they are taken: %q", places, want)
	}
}
