package handlers

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"herald/app/access"
)

// grantKey is where a subscription route keeps the client's grant in the
// request's context, for the handler to end the stream when it expires.
const grantKey = "herald.grant"

// authorizer is how every route asks the access policy whether this client
// may read or write a topic: the WebSocket and SSE routes through
// subscribers, the notify route (and so the page's form) through
// authorize, and the page through the access route.
type authorizer struct {
	policy *access.Policy
}

// credentialFrom is the credential a request presents, "" for none: the
// Authorization header (Bearer), else ?token=, else the herald_token
// cookie, which is how a browser's EventSource and WebSocket carry one.
// The cookie comes last because a browser sends it with every request,
// whoever wrote the request, while a header or ?token= is the credential
// this request chose. query is the request's parsed query, which Echo
// keeps (c.QueryParams).
func credentialFrom(r *http.Request, query url.Values) string {
	if auth := r.Header.Get(echo.HeaderAuthorization); auth != "" {
		scheme, token, ok := strings.Cut(auth, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(token)
		}
	}
	if token := query.Get("token"); token != "" {
		return token
	}
	if cookie, err := r.Cookie(access.CookieName); err == nil {
		// The page URL-encodes the token, since a cookie cannot hold
		// every character a token may.
		if token, err := url.PathUnescape(cookie.Value); err == nil {
			return token
		}
		return cookie.Value
	}
	return ""
}

// authorize decides whether the request may do a to topic; a refusal comes
// back as the error to return, with its status and WWW-Authenticate set.
func (a *authorizer) authorize(c echo.Context, act access.Action, topic string) (*access.Grant, error) {
	g, err := a.policy.Authorize(credentialFrom(c.Request(), c.QueryParams()), act, topic)
	if err != nil {
		return nil, refusal(c, err)
	}
	return g, nil
}

// subscribers is the middleware on the WebSocket and SSE routes: the
// client must be allowed to read the topic it asks for, before any
// upgrade.
func (a *authorizer) subscribers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		topic, err := topicParam(c.QueryParams())
		if err != nil {
			return err
		}
		g, err := a.authorize(c, access.Read, topic)
		if err != nil {
			return err
		}
		c.Set(grantKey, g)
		return next(c)
	}
}

// whenCredentialExpires runs expired, once, when the credential of a
// subscription request runs out, by the clock now, and returns what stops
// that from happening; a credential that never expires runs nothing. The
// subscription routes end the subscription then, with a reason the client
// can tell apart: otherwise a short-lived token would grant reading for
// as long as its holder stays connected. The client reconnects with a new
// credential and resumes.
func whenCredentialExpires(c echo.Context, now func() time.Time, expired func()) (stop func()) {
	g, ok := c.Get(grantKey).(*access.Grant)
	if !ok || g.Expires.IsZero() {
		return func() {}
	}
	timer := time.AfterFunc(g.Expires.Sub(now()), expired)
	return func() { timer.Stop() }
}

// refusal turns the policy's refusal into the client's error, with the
// WWW-Authenticate header that RFC 6750 asks for. Other errors pass.
func refusal(c echo.Context, err error) error {
	var denied *access.DeniedError
	if !errors.As(err, &denied) {
		return err
	}
	challenge := func(code string) {
		value := `Bearer realm="herald"`
		if code != "" {
			value += fmt.Sprintf(`, error=%q, error_description=%q`, code, denied.Message)
		}
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, value)
	}
	switch denied.Reason {
	case access.NoCredential:
		challenge("")
		return &clientError{status: http.StatusUnauthorized, message: denied.Message, code: "token_required"}
	case access.ExpiredCredential:
		challenge("invalid_token")
		return &clientError{status: http.StatusUnauthorized, message: denied.Message, code: "token_expired"}
	case access.InsufficientScope:
		challenge("insufficient_scope")
		return &clientError{status: http.StatusForbidden, message: denied.Message, code: "insufficient_scope"}
	}
	challenge("invalid_token")
	return &clientError{status: http.StatusUnauthorized, message: denied.Message, code: "invalid_token"}
}

// accessReply is what the access route says about a credential.
type accessReply struct {
	Name    string       `json:"name"`
	Kind    string       `json:"kind"` // token, jwt or anonymous
	Read    []string     `json:"read"`
	Write   []string     `json:"write"`
	Expires *time.Time   `json:"expires,omitempty"`
	Topic   *topicAccess `json:"topic,omitempty"`
	// TokensAccepted says whether this server takes credentials at all,
	// so that the page offers a token field only where one can help.
	TokensAccepted bool `json:"tokens_accepted"`
}

// topicAccess is what the credential may do with the topic asked about.
type topicAccess struct {
	Name  string `json:"name"`
	Read  bool   `json:"read"`
	Write bool   `json:"write"`
}

// show answers GET paths.access: what the presented credential may read
// and write, and with ?topic= what it may do there. An invalid or expired
// credential gets the same 401 as on any other route.
func (a *authorizer) show(c echo.Context) error {
	var topic string
	if query := c.QueryParams(); query.Has("topic") {
		var err error
		if topic, err = topicParam(query); err != nil {
			return err
		}
	}
	g, err := a.policy.Identify(credentialFrom(c.Request(), c.QueryParams()))
	if err != nil {
		return refusal(c, err)
	}
	reply := accessReply{
		Name: g.Name, Kind: g.Kind, Read: nonNil(g.Read), Write: nonNil(g.Write),
		TokensAccepted: a.policy.TakesCredentials(),
	}
	if !g.Expires.IsZero() {
		expires := g.Expires.UTC()
		reply.Expires = &expires
	}
	if topic != "" {
		reply.Topic = &topicAccess{Name: topic, Read: g.Allows(access.Read, topic), Write: g.Allows(access.Write, topic)}
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusOK, reply)
}

func nonNil(p access.Patterns) []string {
	if p == nil {
		return []string{}
	}
	return p
}
