package handlers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"herald/app"
	"herald/app/access"
	"herald/app/config"
)

type testServer struct {
	e   http.Handler
	hub *app.Hub
}

func newTestServer(t *testing.T, configure func(*config.Config)) *testServer {
	t.Helper()
	cfg := config.Default()
	cfg.Security.AllowedHosts = []string{"example.com"} // httptest.NewRequest's host
	if configure != nil {
		configure(&cfg)
	}
	hub, err := app.NewHub(app.HubOptions{
		MaxLagBytes:     1 << 20,
		MaxMessageBytes: cfg.Limits.MaxMessageBytes,
		HistorySize:     cfg.History.Size,
		HistoryTTL:      cfg.History.TTL,
		MaxTopics:       cfg.Limits.MaxTopics,
	})
	if err != nil {
		t.Fatal(err)
	}
	policy, err := access.NewPolicy(cfg.Security.Access(), nil)
	if err != nil {
		t.Fatal(err)
	}
	edge, err := NewServer(Options{Config: cfg, Node: app.NewNode(hub, app.NewMemoryBroker(hub)), Policy: policy, Templates: os.DirFS("../templates"), Static: os.DirFS("../static")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(edge.Close)
	return &testServer{e: edge.Handler(), hub: hub}
}

func (s *testServer) do(req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	s.e.ServeHTTP(rec, req)
	return rec
}

// newRequest builds a request with a body and, unless empty, a Content-Type.
func newRequest(method, target, contentType, body string) *http.Request {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set(echo.HeaderContentType, contentType)
	}
	return req
}

func multipartBody(t *testing.T, fields map[string]string) (string, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for k, v := range fields {
		if err := w.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.FormDataContentType(), &buf
}

func TestNotifyPublishes(t *testing.T) {
	t.Parallel()
	formType, formBody := multipartBody(t, map[string]string{"other": "x", "msg": "from multipart"})
	topicFormType, topicFormBody := multipartBody(t, map[string]string{"topic": "news", "msg": "from multipart"})
	tests := []struct {
		name        string
		whenMethod  string
		whenTarget  string
		whenType    string
		whenBody    string
		expectText  string
		expectTopic string
	}{
		{"givenSeedGET", http.MethodGet, "/notify?msg=HelloWorld", "", "", "HelloWorld", app.DefaultTopic},
		{"givenGETWithEncodedSpaces", http.MethodGet, "/notify?msg=Hello%20World%21", "", "", "Hello World!", app.DefaultTopic},
		{"givenForm", http.MethodPost, "/notify", echo.MIMEApplicationForm, "msg=hi+there&x=1", "hi there", app.DefaultTopic},
		{"givenTextPlain", http.MethodPost, "/notify", "text/plain; charset=utf-8", "line one\nline two", "line one\nline two", app.DefaultTopic},
		{"givenNoContentType", http.MethodPost, "/notify", "", "raw body", "raw body", app.DefaultTopic},
		{"givenJSON", http.MethodPost, "/notify", echo.MIMEApplicationJSON, `{"msg": "from JSON", "extra": true}`, "from JSON", app.DefaultTopic},
		{"givenMultipart", http.MethodPost, "/notify", formType, formBody.String(), "from multipart", app.DefaultTopic},
		{"givenPOSTWithQueryOnly", http.MethodPost, "/notify?msg=query", "", "", "query", app.DefaultTopic},
		{"givenHTMLLookalike", http.MethodGet, "/notify?msg=%3Cimg+src%3Dx+onerror%3Dalert(1)%3E", "", "", "<img src=x onerror=alert(1)>", app.DefaultTopic},
		{"givenGETWithTopic", http.MethodGet, "/notify?msg=hi&topic=news", "", "", "hi", "news"},
		{"givenFormWithTopic", http.MethodPost, "/notify", echo.MIMEApplicationForm, "msg=hi&topic=news.eu-1_x", "hi", "news.eu-1_x"},
		{"givenJSONWithTopic", http.MethodPost, "/notify", echo.MIMEApplicationJSON, `{"msg": "hi", "topic": "news"}`, "hi", "news"},
		{"givenMultipartWithTopic", http.MethodPost, "/notify", topicFormType, topicFormBody.String(), "from multipart", "news"},
		{"givenTextPlainWithQueryTopic", http.MethodPost, "/notify?topic=news", "text/plain", "raw", "raw", "news"},
		{"givenFormTopicSameAsQueryTopic", http.MethodPost, "/notify?topic=news", echo.MIMEApplicationForm, "msg=hi&topic=news", "hi", "news"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestServer(t, nil)
			sub, err := s.hub.Subscribe(app.SubscribeRequest{Topic: tc.expectTopic, Label: "test"})
			if err != nil {
				t.Fatal(err)
			}
			other, err := s.hub.Subscribe(app.SubscribeRequest{Topic: "elsewhere", Label: "test"})
			if err != nil {
				t.Fatal(err)
			}
			rec := s.do(newRequest(tc.whenMethod, tc.whenTarget, tc.whenType, tc.whenBody))
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			var got receipt
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("receipt %q: %v", rec.Body, err)
			}
			var d app.Delivery
			sub.Next(&d, 1<<20)
			taken := d.Messages
			if len(taken) != 1 {
				t.Fatalf("%d messages were published, want 1", len(taken))
			}
			if m := taken[0]; m.Text != tc.expectText {
				t.Errorf("published %q, want %q", m.Text, tc.expectText)
			} else if want := (receipt{ID: strconv.FormatUint(m.ID, 10), Topic: tc.expectTopic, Subscribers: 1}); got != want {
				t.Errorf("receipt = %+v, want %+v", got, want)
			}
			if other.Next(&d, 1<<20) {
				t.Errorf("a subscriber of another topic got %d messages", len(d.Messages))
			}
		})
	}
}

func TestNotifyRefusesBadRequestsWithJSONErrors(t *testing.T) {
	t.Parallel()
	const limit = 64
	oversizedForm := "msg=" + strings.Repeat("x", limit+1)
	tests := []struct {
		name         string
		whenMethod   string
		whenTarget   string
		whenType     string
		whenBody     string
		whenChunked  bool
		expectStatus int
		expectError  string
	}{
		{"whenNoMsg", http.MethodGet, "/notify", "", "", false, 400, "msg is empty"},
		{"whenEmptyMsg", http.MethodGet, "/notify?msg=", "", "", false, 400, "msg is empty"},
		{"whenEmptyBody", http.MethodPost, "/notify", "text/plain", "", false, 400, "msg is empty"},
		{"whenFormWithoutMsg", http.MethodPost, "/notify", echo.MIMEApplicationForm, "hello world", false, 400, "form has no msg field"},
		{"whenJSONWithoutMsg", http.MethodPost, "/notify", echo.MIMEApplicationJSON, `{"message": "x"}`, false, 400, `JSON body has no "msg" field`},
		{"whenJSONMsgNotString", http.MethodPost, "/notify", echo.MIMEApplicationJSON, `{"msg": 5}`, false, 400, "JSON msg must be a string"},
		{"whenJSONMalformed", http.MethodPost, "/notify", echo.MIMEApplicationJSON, `{"msg": `, false, 400, "JSON body is malformed"},
		{"whenJSONTwoValues", http.MethodPost, "/notify", echo.MIMEApplicationJSON, `{"msg": "a"} {"msg": "b"}`, false, 400, "more than one value"},
		{"whenMultipartWithoutBoundary", http.MethodPost, "/notify", "multipart/form-data", "x", false, 400, "no boundary"},
		{"whenUnsupportedType", http.MethodPost, "/notify", "application/xml", "<msg/>", false, 415, `Content-Type "application/xml" is not supported`},
		{"whenMalformedType", http.MethodPost, "/notify", "text/plain; ===", "x", false, 400, "is malformed"},
		{"whenInvalidUTF8InQuery", http.MethodGet, "/notify?msg=%FF%FE", "", "", false, 400, "not valid UTF-8"},
		{"whenInvalidUTF8InBody", http.MethodPost, "/notify", "text/plain", "bad \xff", false, 400, "not valid UTF-8"},
		{"whenQueryMsgTooLarge", http.MethodGet, "/notify?msg=" + strings.Repeat("x", limit+1), "", "", false, 413, "message is too large"},
		{"whenDeclaredBodyTooLarge", http.MethodPost, "/notify", "text/plain", strings.Repeat("x", limit+1), false, 413, "the request body is 65 bytes, and a message may be at most 64 bytes (limits.max_message_bytes)"},
		{"whenChunkedBodyTooLarge", http.MethodPost, "/notify", "text/plain", strings.Repeat("x", limit+1), true, 413, "a message may be at most 64 bytes (limits.max_message_bytes)"},
		// The body limit for forms allows for their encoding; the error
		// still speaks of the message limit that the user configured.
		{"whenFormBodyFarTooLarge", http.MethodPost, "/notify", echo.MIMEApplicationForm, "msg=" + strings.Repeat("x", 100*limit), false, 413, "a message may be at most 64 bytes (limits.max_message_bytes)"},
		{"whenChunkedFormFarTooLarge", http.MethodPost, "/notify", echo.MIMEApplicationForm, "msg=" + strings.Repeat("x", 100*limit), true, 413, "a message may be at most 64 bytes (limits.max_message_bytes)"},
		{"whenFormMsgTooLarge", http.MethodPost, "/notify", echo.MIMEApplicationForm, oversizedForm, false, 413, "message is too large: 65 bytes, the limit is 64 (limits.max_message_bytes)"},
		{"whenWrongMethod", http.MethodDelete, "/notify", "", "", false, 405, "method not allowed"},
		{"whenUnknownPath", http.MethodGet, "/nope", "", "", false, 404, "no route at this path"},
		{"whenPlainHTTPOnWebSocketRoute", http.MethodGet, "/ws", "", "", false, 426, "this is the WebSocket route"},
		{"whenTopicHasSlash", http.MethodGet, "/notify?msg=x&topic=a/b", "", "", false, 400, `invalid topic "a/b": '/' is not allowed`},
		{"whenTopicEmpty", http.MethodGet, "/notify?msg=x&topic=", "", "", false, 400, "invalid topic: the name is empty"},
		{"whenTopicTooLong", http.MethodGet, "/notify?msg=x&topic=" + strings.Repeat("a", 65), "", "", false, 400, "65 bytes long, the limit is 64"},
		{"whenFormTopicNotASCII", http.MethodPost, "/notify", echo.MIMEApplicationForm, "msg=x&topic=caf%C3%A9", false, 400, "invalid topic"},
		{"whenFormTopicDiffersFromQueryTopic", http.MethodPost, "/notify?topic=other", echo.MIMEApplicationForm, "msg=x&topic=news", false, 400, `the request names two topics, "news" in the body and "other" in the URL`},
		{"whenJSONTopicDiffersFromQueryTopic", http.MethodPost, "/notify?topic=other", echo.MIMEApplicationJSON, `{"msg": "x", "topic": "news"}`, false, 400, "names two topics"},
		{"whenJSONTopicNotString", http.MethodPost, "/notify", echo.MIMEApplicationJSON, `{"msg": "x", "topic": 1}`, false, 400, "JSON topic must be a string"},
		{"whenPageTopicInvalid", http.MethodGet, "/?topic=a%20b", "", "", false, 400, "invalid topic"},
		{"whenEventsTopicInvalid", http.MethodGet, "/events?topic=%2E%2E%2F", "", "", false, 400, "invalid topic"},
		{"whenEventsSinceNotANumber", http.MethodGet, "/events?since=abc", "", "", false, 400, `since "abc" is not a message id`},
		{"whenEventsSinceNegative", http.MethodGet, "/events?since=-1", "", "", false, 400, `since "-1" is not a message id`},
		{"whenEventsSinceEmpty", http.MethodGet, "/events?since=", "", "", false, 400, `since "" is not a message id`},
		{"whenEventsSinceTooLarge", http.MethodGet, "/events?since=18446744073709551616", "", "", false, 400, "too large to be a message id"},
		{"whenEventsFormatUnknown", http.MethodGet, "/events?format=xml", "", "", false, 400, `format "xml" is not known`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestServer(t, func(c *config.Config) { c.Limits.MaxMessageBytes = limit })
			req := newRequest(tc.whenMethod, tc.whenTarget, tc.whenType, tc.whenBody)
			if tc.whenChunked {
				req.ContentLength = -1
			}
			rec := s.do(req)
			if rec.Code != tc.expectStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.expectStatus, rec.Body)
			}
			if ct := rec.Header().Get(echo.HeaderContentType); !strings.HasPrefix(ct, echo.MIMEApplicationJSON) {
				t.Errorf("Content-Type %q, want JSON", ct)
			}
			var body errorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q is not a JSON error: %v", rec.Body, err)
			}
			if !strings.Contains(body.Error, tc.expectError) {
				t.Errorf("error %q does not contain %q", body.Error, tc.expectError)
			}
			if got := s.hub.Stats().Published; got != 0 {
				t.Errorf("a refused request published %d messages", got)
			}
		})
	}
}

func TestWrongMethodListsAllowedMethods(t *testing.T) {
	t.Parallel()
	rec := newTestServer(t, nil).do(httptest.NewRequest(http.MethodPut, "/notify", nil))
	if allow := rec.Header().Get(echo.HeaderAllow); !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") {
		t.Errorf("Allow = %q, want GET and POST", allow)
	}
}

func TestHEADAnswersWhereGETReadsButNeverPublishes(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	for path, want := range map[string]int{"/": 200, "/static/app.js": 200, "/notify?msg=x": 405} {
		if rec := s.do(httptest.NewRequest(http.MethodHead, path, nil)); rec.Code != want {
			t.Errorf("HEAD %s = %d, want %d", path, rec.Code, want)
		}
	}
	if n := s.hub.Stats().Published; n != 0 {
		t.Errorf("HEAD published %d messages", n)
	}
}

func TestBrowsersGetPagesAndRedirects(t *testing.T) {
	t.Parallel()
	const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

	t.Run("givenFormPostWithoutJavaScript_expectRedirectToPage", func(t *testing.T) {
		t.Parallel()
		s := newTestServer(t, func(c *config.Config) { c.Paths.Page = "/watch" })
		req := newRequest(http.MethodPost, "/notify", echo.MIMEApplicationForm, "msg=hello")
		req.Header.Set(echo.HeaderAccept, browserAccept)
		rec := s.do(req)
		if rec.Code != http.StatusSeeOther || rec.Header().Get(echo.HeaderLocation) != "/watch" {
			t.Fatalf("status %d Location %q, want 303 to /watch", rec.Code, rec.Header().Get(echo.HeaderLocation))
		}
		if s.hub.Stats().Published != 1 {
			t.Error("the form post did not publish")
		}
	})
	t.Run("givenUnknownPath_expectHTMLErrorPage", func(t *testing.T) {
		t.Parallel()
		req := httptest.NewRequest(http.MethodGet, "/missing", nil)
		req.Header.Set(echo.HeaderAccept, browserAccept)
		rec := newTestServer(t, nil).do(req)
		if rec.Code != http.StatusNotFound || !strings.HasPrefix(rec.Header().Get(echo.HeaderContentType), echo.MIMETextHTML) {
			t.Fatalf("status %d type %q, want a 404 page", rec.Code, rec.Header().Get(echo.HeaderContentType))
		}
		if !strings.Contains(rec.Body.String(), "404 · Not Found") {
			t.Errorf("page does not say 404: %s", rec.Body)
		}
	})
}

func TestManifestStartsOnTheTopicsPage(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config.Config) { c.Paths.Page = "/watch" })
	tests := []struct {
		name, givenQuery, expectStartURL string
		expectStatus                     int
	}{
		{"givenNoTopic_expectThePage", "", "/watch", http.StatusOK},
		{"givenATopic_expectItsPage", "?topic=news", "/watch?topic=news", http.StatusOK},
		{"givenAnInvalidTopic_expect400", "?topic=no%20spaces", "", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := s.do(httptest.NewRequest(http.MethodGet, "/static/manifest.webmanifest"+tt.givenQuery, nil))
			var manifest struct {
				StartURL string `json:"start_url"`
				Error    string `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &manifest); err != nil || rec.Code != tt.expectStatus {
				t.Fatalf("status %d, body %s; want %d and JSON", rec.Code, rec.Body, tt.expectStatus)
			}
			if tt.expectStatus != http.StatusOK {
				if manifest.Error == "" {
					t.Errorf("a refusal without a reason: %s", rec.Body)
				}
				return
			}
			if manifest.StartURL != tt.expectStartURL || rec.Header().Get(echo.HeaderContentType) != "application/manifest+json" {
				t.Errorf("start_url %q, type %q; want %q, application/manifest+json", manifest.StartURL, rec.Header().Get(echo.HeaderContentType), tt.expectStartURL)
			}
		})
	}
}

func TestPageUsesConfiguredPaths(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config.Config) {
		c.Paths = config.Paths{Page: "/watch", WS: "/live", Notify: "/send", Events: "/stream", Static: "/assets", Healthz: "/alive", Readyz: "/ready", Metrics: "/prom", Pprof: "/profiles", Access: "/whoami", Push: "/webpush"}
	})
	rec := s.do(httptest.NewRequest(http.MethodGet, "/watch", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("page status %d", rec.Code)
	}
	for _, want := range []string{`data-ws-path="/live"`, `data-notify-path="/send"`, `action="/send"`, `src="/assets/app.js"`, `id="publish-form"`, `name="msg"`,
		`data-push-path="/webpush"`, `data-page-path="/watch"`, `data-static-path="/assets"`, `<link rel="manifest" href="/assets/manifest.webmanifest">`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("page lacks %s", want)
		}
	}
	for path, want := range map[string]int{"/assets/app.js": 200, "/assets/style.css": 200, "/static/app.js": 404, "/": 404, "/notify": 404} {
		if rec := s.do(httptest.NewRequest(http.MethodGet, path, nil)); rec.Code != want {
			t.Errorf("GET %s = %d, want %d", path, rec.Code, want)
		}
	}
}

// TestSubscriptionsRefuseLongRequests: a subscriber's request lives as
// long as its stream, so a long URL or header would be memory held for
// the connection's whole life. Such requests are refused before anything
// is held for them; ones of a size browsers send are served.
func TestSubscriptionsRefuseLongRequests(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("p", maxHeldHead)
	for _, tc := range []struct {
		name, target, header string
		webSocket            bool
	}{
		{"givenALongQueryOnTheEventStream", "/events?topic=news&padding=" + long, "", false},
		{"givenALongQueryOnTheWebSocket", "/ws?topic=news&padding=" + long, "", true},
		{"givenALongHeaderOnTheWebSocket", "/ws?topic=news", long, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestServer(t, nil)
			req := httptest.NewRequest(http.MethodGet, tc.target, nil)
			if tc.webSocket {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "websocket")
			}
			if tc.header != "" {
				req.Header.Set("X-Padding", tc.header)
			}
			rec := s.do(req)
			var body errorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &body); rec.Code != http.StatusRequestHeaderFieldsTooLarge || err != nil {
				t.Fatalf("status %d body %.200q, want a 431 JSON error", rec.Code, rec.Body)
			}
			if got := rec.Header().Get("Connection"); got != "close" {
				t.Errorf("Connection: %q, want close: an idle connection would keep the request", got)
			}
			if body.Code != "request_too_large" || !strings.Contains(body.Error, "a subscription may send at most 16384") {
				t.Errorf("error %+v does not say what the limit is", body)
			}
			if stats := s.hub.Stats(); stats.Subscribers != 0 || stats.Topics != 0 {
				t.Errorf("a refused request left %d subscribers and %d topics", stats.Subscribers, stats.Topics)
			}
		})
	}
	// What a browser with a few cookies sends is fine: a plain GET of the
	// WebSocket route gets past the bound to the route's own 426.
	s := newTestServer(t, nil)
	req := httptest.NewRequest(http.MethodGet, "/ws?topic=news", nil)
	req.Header.Set("Cookie", strings.Repeat("c", 8<<10))
	if rec := s.do(req); rec.Code != http.StatusUpgradeRequired {
		t.Errorf("a request with 8 KiB of cookies: %d %.200s, want the route's 426", rec.Code, rec.Body)
	}
}

func TestStreamRoutesRefuseBadParametersBeforeSubscribing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		whenTarget    string
		whenHeader    string // Last-Event-ID
		whenWebSocket bool
		expectError   string
	}{
		{"whenWebSocketTopicInvalid", "/ws?topic=a/b", "", true, "invalid topic"},
		{"whenWebSocketSinceInvalid", "/ws?since=1e3", "", true, `since "1e3" is not a message id`},
		{"whenWebSocketFormatUnknown", "/ws?format=binary", "", true, `format "binary" is not known`},
		{"whenLastEventIDInvalid", "/events", "abc", false, `Last-Event-ID "abc" is not a message id`},
		{"whenLastEventIDInvalidDespiteGoodSince", "/events?since=1", "-5", false, "Last-Event-ID"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestServer(t, nil)
			req := httptest.NewRequest(http.MethodGet, tc.whenTarget, nil)
			if tc.whenWebSocket {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "websocket")
			}
			if tc.whenHeader != "" {
				req.Header.Set("Last-Event-ID", tc.whenHeader)
			}
			rec := s.do(req)
			var body errorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &body); rec.Code != http.StatusBadRequest || err != nil {
				t.Fatalf("status %d body %q, want a 400 JSON error", rec.Code, rec.Body)
			}
			if !strings.Contains(body.Error, tc.expectError) {
				t.Errorf("error %q does not contain %q", body.Error, tc.expectError)
			}
			if stats := s.hub.Stats(); stats.Subscribers != 0 || stats.Topics != 0 {
				t.Errorf("a refused request left %d subscribers and %d topics", stats.Subscribers, stats.Topics)
			}
		})
	}
}

func TestReadinessFailsOnceShutdownBegins(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	if rec := s.do(httptest.NewRequest(http.MethodGet, "/readyz", nil)); rec.Code != http.StatusOK {
		t.Fatalf("readyz before shutdown: %d %s", rec.Code, rec.Body)
	}
	if err := s.hub.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	rec := s.do(httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var body map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusServiceUnavailable || body["status"] != "unavailable" {
		t.Errorf("readyz during shutdown: %d %s, want 503 unavailable", rec.Code, rec.Body)
	}
	if rec := s.do(httptest.NewRequest(http.MethodGet, "/healthz", nil)); rec.Code != http.StatusOK {
		t.Errorf("healthz during shutdown: %d, want 200: the process still serves", rec.Code)
	}
}

func TestTopicMetricsKeepTheirCardinalityBounded(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	const topics = topicLabelLimit + 10
	for i := range topics {
		for range 1 + i/topicLabelLimit { // the last ten topics are the busiest
			if _, err := s.hub.Subscribe(app.SubscribeRequest{Topic: fmt.Sprintf("t%03d", i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	body := s.do(httptest.NewRequest(http.MethodGet, "/metrics", nil)).Body.String()
	series := 0
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, "herald_topic_subscribers{") {
			series++
		}
	}
	if series != topicLabelLimit+1 {
		t.Errorf("%d topic series, want %d and one for the rest", series, topicLabelLimit)
	}
	for _, want := range []string{`herald_topic_subscribers{topic="t059"} 2`, `herald_topic_subscribers{topic="(other)"} 10`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestClientAddressTrustsForwardingHeadersOnlyFromTrustedProxies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		givenTrusted []string
		givenPeer    string
		givenXFF     string
		givenRealIP  string
		expectClient string
	}{
		{"givenNoTrustedProxies_expectThePeerWhateverHeadersSay", nil, "203.0.113.7", "198.51.100.1", "198.51.100.2", "203.0.113.7"},
		{"givenATrustedProxy_expectTheClientItNames", []string{"10.0.0.5"}, "10.0.0.5", "198.51.100.1", "", "198.51.100.1"},
		{"givenAForgedEntryBeforeTheProxysOwn_expectTheRightMostUntrusted", []string{"10.0.0.5"}, "10.0.0.5", "6.6.6.6, 198.51.100.1", "", "198.51.100.1"},
		{"givenTwoTrustedHops_expectTheClientBeforeThem", []string{"10.0.0.0/8"}, "10.0.0.5", "198.51.100.1, 10.1.1.1", "", "198.51.100.1"},
		{"givenAnUntrustedPeerForging_expectThePeer", []string{"10.0.0.5"}, "203.0.113.7", "198.51.100.1", "198.51.100.2", "203.0.113.7"},
		{"givenLoopbackNotListed_expectItUntrusted", []string{"10.0.0.5"}, "127.0.0.1", "198.51.100.1", "", "127.0.0.1"},
		{"givenXRealIPFromATrustedProxy_expectIt", []string{"10.0.0.5"}, "10.0.0.5", "", "198.51.100.2", "198.51.100.2"},
		{"givenGarbageInXFF_expectThePeer", []string{"10.0.0.5"}, "10.0.0.5", "not-an-address", "", "10.0.0.5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.RemoteAddr = tc.givenPeer + ":4242"
			if tc.givenXFF != "" {
				req.Header.Set(echo.HeaderXForwardedFor, tc.givenXFF)
			}
			if tc.givenRealIP != "" {
				req.Header.Set(echo.HeaderXRealIP, tc.givenRealIP)
			}
			if got := clientAddress(tc.givenTrusted)(req); got != tc.expectClient {
				t.Errorf("client %q, want %q", got, tc.expectClient)
			}
		})
	}
}
