package handlers

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"herald/app"
)

// Every way a publish request can be malformed must end in a 4xx that
// explains it, never a panic or a 500.
func FuzzReadPublication(f *testing.F) {
	f.Add(true, "msg=hello&topic=news", "", "")
	f.Add(false, "", "application/x-www-form-urlencoded", "msg=a%20b&topic=x")
	f.Add(false, "topic=t", "text/plain; charset=utf-8", "raw body")
	f.Add(false, "", "application/json", `{"msg":"x","topic":"news"}`)
	f.Add(false, "", "application/json", `{"msg":1}`)
	f.Add(false, "", "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"msg\"\r\n\r\nhi\r\n--b--\r\n")
	f.Add(false, "", "multipart/form-data", "x")
	f.Add(false, "msg=q", "text/plain; ===", "")
	const limit = 256
	f.Fuzz(func(t *testing.T, get bool, rawQuery, contentType, body string) {
		method := http.MethodPost
		if get {
			method = http.MethodGet
		}
		req := httptest.NewRequest(method, "/notify", strings.NewReader(body))
		req.URL.RawQuery = rawQuery
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		p, err := readPublication(httptest.NewRecorder(), req, limit)
		if err != nil {
			if status, message, _ := describeError(err); status < 400 || status >= 500 || message == "" {
				t.Fatalf("error %v became %d %q", err, status, message)
			}
			return
		}
		if method == http.MethodPost && contentType == "text/plain" && body != "" && p.text != body {
			t.Fatalf("text/plain body %q read as %q", body, p.text)
		}
	})
}

// Subscription parameters either parse to something usable or are a 400.
func FuzzStreamParams(f *testing.F) {
	f.Add("topic=news&since=42&format=json&presence=1", "")
	f.Add("since=0", "17")
	f.Add("topic=%2E%2E%2F&since=-1", "")
	f.Add("format=xml", "abc")
	f.Add("topic=&since=18446744073709551616", "")
	f.Fuzz(func(t *testing.T, rawQuery, lastEventID string) {
		req := httptest.NewRequest(http.MethodGet, "/events", nil)
		req.URL.RawQuery = rawQuery
		if lastEventID != "" {
			req.Header.Set(lastEventIDHeader, lastEventID)
		}
		p, err := parseStreamParams(req, req.URL.Query())
		if err != nil {
			if status, message, _ := describeError(err); status != http.StatusBadRequest || message == "" {
				t.Fatalf("error %v became %d %q", err, status, message)
			}
			return
		}
		if app.CheckTopic(p.topic) != nil {
			t.Fatalf("accepted topic %q", p.topic)
		}
		if query, _ := url.ParseQuery(rawQuery); p.presence && !p.json || (!query.Has("since") && lastEventID == "" && p.resume) {
			t.Fatalf("params %+v from %q", p, rawQuery)
		}
	})
}
