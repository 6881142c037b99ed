// Package client is a client for Herald's routes: publish, and subscribe
// with resume. It speaks plain HTTP with the standard library only: a
// publish is a text/plain POST to the notify route, and a subscription
// reads the event stream (Server-Sent Events), whose Last-Event-ID resume
// is the simplest way to miss nothing across reconnects.
//
// It imports nothing of Herald, so that it stays usable whatever the
// server's packages become.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// responseHeaderTimeout bounds the wait for a response's headers. Herald
// answers a subscription's headers once it is registered and a publish once
// it is stored, so a longer wait means the server or the network is stuck.
const responseHeaderTimeout = time.Minute

// ErrBadURL is wrapped by the errors that EventsURL and NotifyURL return.
var ErrBadURL = errors.New("bad URL")

// Client talks to Herald servers. It sends its token, if any, with every
// request, over connections of its own.
type Client struct {
	token     string
	transport *http.Transport
	http      *http.Client
}

// New returns a client that sends token as "Authorization: Bearer"; an
// empty token sends none. Close lets go of its connections.
func New(token string) *Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.ResponseHeaderTimeout = responseHeaderTimeout
	return &Client{token: token, transport: transport, http: &http.Client{Transport: transport}}
}

// Close closes the client's idle connections, and with them the
// transport's goroutines that watch them.
func (c *Client) Close() { c.transport.CloseIdleConnections() }

// newRequest builds a request to u with the client's credential.
func (c *Client) newRequest(ctx context.Context, method string, u *url.URL, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// EventsURL reads where to subscribe; see routeURL.
func EventsURL(raw string) (*url.URL, error) { return routeURL(raw, "events") }

// NotifyURL reads where to publish; see routeURL.
func NotifyURL(raw string) (*url.URL, error) { return routeURL(raw, "notify") }

// routeURL reads a URL given for the route named route: the server's
// address alone (http:// assumed), or a path ending in "/" (Herald behind
// a proxy's prefix), means the route at its default name there; a URL of
// any route at its default name (a path ending in /events, /notify or
// /ws) means the route beside it, so that one URL serves both commands;
// any other path is taken as the route's own, moved by paths in the
// server's config. A WebSocket URL is read as its http or https twin.
func routeURL(raw, route string) (*url.URL, error) {
	u, err := parseServerURL(raw)
	if err != nil {
		return nil, err
	}
	websocket := u.Scheme == "ws" || u.Scheme == "wss"
	if websocket {
		u.Scheme = "http" + strings.TrimPrefix(u.Scheme, "ws")
	}
	dir, last := path.Split(u.Path)
	switch {
	case u.Path == "":
		u.Path = "/" + route
	case last == "" || last == "events" || last == "notify" || last == "ws":
		u.Path = dir + route
	case websocket:
		return nil, fmt.Errorf("%w: %s is a WebSocket URL at a moved path, which says nothing of where the %s route is: give its URL (paths.%s), such as http://%s/%s",
			ErrBadURL, raw, route, route, u.Host, route)
	}
	u.RawPath = ""
	return u, nil
}

// parseServerURL reads an http, https, ws or wss URL with a host; one
// without a scheme is taken as http, as curl does.
func parseServerURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: it is empty: give the server's address, such as http://localhost:9000", ErrBadURL)
	}
	withScheme := raw
	if !strings.Contains(raw, "://") {
		withScheme = "http://" + raw
	}
	u, err := url.Parse(withScheme)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadURL, err)
	}
	switch u.Scheme {
	case "http", "https", "ws", "wss":
	default:
		return nil, fmt.Errorf("%w: %s: the scheme must be http or https (or ws, wss), not %q", ErrBadURL, raw, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: %s names no host, such as localhost:9000", ErrBadURL, raw)
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

// Refusal is an answer other than the one asked for: the server's status,
// and what it said about it.
type Refusal struct {
	// Status is the HTTP status.
	Status int
	// Reason is the server's explanation: its JSON "error", or else the
	// first line of the body.
	Reason string
	// Code is the server's machine-readable reason, its JSON "code", such
	// as token_required or outcome_unknown; often empty.
	Code string
	// RetryAfter is how long the server asked to wait (Retry-After in
	// seconds); zero when it did not say.
	RetryAfter time.Duration
}

// Error words the refusal in one line: "HTTP 401 token_required: ...".
func (r *Refusal) Error() string {
	s := "HTTP " + strconv.Itoa(r.Status)
	if r.Code != "" {
		s += " " + r.Code
	}
	if r.Reason != "" {
		s += ": " + r.Reason
	}
	return s
}

// Final reports whether asking again cannot help: the request itself or
// its credential was refused. Too many requests (429), a request timeout
// (408) and every server-side status (5xx) may pass.
func (r *Refusal) Final() bool {
	return r.Status < 500 && r.Status != http.StatusTooManyRequests && r.Status != http.StatusRequestTimeout
}

// maxRefusalBody bounds how much of a refusal's body is read for its
// reason.
const maxRefusalBody = 4 << 10

// ReadRefusal reads the reason from a response that is not the one asked
// for: at most a few KiB of its body, which the caller closes.
func ReadRefusal(resp *http.Response) *Refusal {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxRefusalBody))
	r := &Refusal{Status: resp.StatusCode}
	if seconds, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && seconds > 0 {
		r.RetryAfter = time.Duration(seconds) * time.Second
	}
	if mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mediaType == "application/json" {
		var reply struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		if json.Unmarshal(body, &reply) == nil && reply.Error != "" {
			r.Reason, r.Code = reply.Error, reply.Code
			return r
		}
	}
	first, _, _ := bytes.Cut(bytes.TrimSpace(body), []byte("\n"))
	r.Reason = strings.TrimSpace(string(first))
	if r.Reason == "" {
		r.Reason = strings.ToLower(http.StatusText(resp.StatusCode))
	}
	return r
}

// withoutURL is a request's error without the URL net/http puts in front
// of it, whose query may hold a token: callers say where they sent it.
func withoutURL(err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return urlErr.Err
	}
	return err
}
