package handlers

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"herald/app"
	"herald/app/config"
	"herald/app/push"
)

// clientError is a refusal the client caused: it carries the status and the
// one-line explanation the client sees.
type clientError struct {
	status  int
	message string
	code    string // a machine-readable reason, where clients need to tell refusals apart
}

func (e *clientError) Error() string { return e.message }

func newClientError(status int, format string, args ...any) *clientError {
	return &clientError{status: status, message: fmt.Sprintf(format, args...)}
}

// errorResponse is the JSON body of every error.
type errorResponse struct {
	Error string `json:"error"`
	// Code tells refusals apart for programs: token_required,
	// invalid_token, token_expired, insufficient_scope, outcome_unknown,
	// idempotency_key_reused, push_disabled, endpoint_not_allowed, and
	// for the limits too_many_connections,
	// too_many_connections_from_address, too_many_publishes,
	// too_many_topics, message_too_large, request_too_large,
	// max_push_subscriptions_per_topic and max_push_subscriptions.
	Code string `json:"code,omitempty"`
}

// errorPageData feeds templates/error.html.
type errorPageData struct {
	Status  int
	Title   string
	Message string
	Paths   config.Paths
}

// newErrorHandler is the one place where an error becomes a status and a
// body: JSON for programs, a page for browsers.
func newErrorHandler(log *slog.Logger, paths config.Paths) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, message, code := describeError(err)
		if status >= http.StatusInternalServerError {
			log.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
		}
		var writeErr error
		switch {
		case c.Request().Method == http.MethodHead:
			writeErr = c.NoContent(status)
		case wantsHTML(c.Request()):
			writeErr = c.Render(status, "error.html", errorPageData{
				Status: status, Title: http.StatusText(status), Message: message, Paths: paths,
			})
		default:
			writeErr = c.JSON(status, errorResponse{Error: message, Code: code})
		}
		if writeErr != nil {
			log.Debug("write error response", "err", writeErr)
		}
	}
}

// describeError maps an error to what a client sees: the status, a
// one-line message, and a machine-readable code where clients need to tell
// refusals apart ("" otherwise). Internal errors are not described: their
// detail goes to the log.
func describeError(err error) (status int, message, code string) {
	var ce *clientError
	var he *echo.HTTPError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &ce):
		return ce.status, ce.message, ce.code
	case errors.Is(err, push.ErrInvalidSubscription):
		return http.StatusBadRequest, err.Error(), ""
	case errors.Is(err, push.ErrEndpointNotAllowed):
		return http.StatusBadRequest, err.Error() + " (push.endpoints)", "endpoint_not_allowed"
	case errors.Is(err, push.ErrTopicFull):
		return http.StatusTooManyRequests, "this topic has as many browsers registered for push as limits.max_push_subscriptions_per_topic allows",
			"max_push_subscriptions_per_topic"
	case errors.Is(err, push.ErrFull):
		return http.StatusServiceUnavailable, "this server has as many browsers registered for push as limits.max_push_subscriptions allows; try again later",
			"max_push_subscriptions"
	case errors.Is(err, push.ErrStore):
		return http.StatusServiceUnavailable, "the push subscription could not be stored or removed; try again shortly", ""
	case errors.Is(err, app.ErrEmptyMessage):
		return http.StatusBadRequest, "msg is empty: give the message as ?msg=, a form field msg, a text/plain body or JSON {\"msg\": \"...\"}", ""
	case errors.Is(err, app.ErrMessageTooLarge):
		return http.StatusRequestEntityTooLarge, err.Error() + " (limits.max_message_bytes)", "message_too_large"
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is too large: the limit is %d bytes", tooBig.Limit), ""
	case errors.Is(err, app.ErrInvalidUTF8):
		return http.StatusBadRequest, "msg is not valid UTF-8", ""
	case errors.Is(err, app.ErrHubClosed):
		return http.StatusServiceUnavailable, "server is shutting down; try again shortly", ""
	case errors.Is(err, app.ErrInvalidTopic):
		return http.StatusBadRequest, err.Error(), ""
	case errors.Is(err, app.ErrTooManyTopics):
		return http.StatusServiceUnavailable, err.Error() + " (limits.max_topics); try an existing topic or try again later", "too_many_topics"
	case errors.Is(err, app.ErrBrokerUnavailable):
		return http.StatusServiceUnavailable, "the broker (Redis) did not answer, so nothing was published or subscribed; try again shortly", ""
	case errors.Is(err, app.ErrPublishUnknown) && errors.Is(err, app.ErrStore):
		return http.StatusInternalServerError, "the history file failed while storing the message, and whether it was stored is unknown: " +
			"it reached no one, but may appear in history after a restart; its id is never given to another message", "outcome_unknown"
	case errors.Is(err, app.ErrPublishUnknown):
		return http.StatusGatewayTimeout, "the broker (Redis) took the message but could not confirm it in time (Redis did not answer, or too few replicas had it): it reaches every subscriber once or no one; " +
			"retry with the same Idempotency-Key header to publish it exactly once", "outcome_unknown"
	case errors.Is(err, app.ErrKeyReused):
		return http.StatusUnprocessableEntity, "this Idempotency-Key was used for another message on this topic, so this one was not published; use a new key for each message",
			"idempotency_key_reused"
	case errors.Is(err, app.ErrStore):
		return http.StatusServiceUnavailable, "the message could not be stored, so it was not published; try again shortly", ""
	case errors.As(err, &he):
		return he.Code, routerMessage(he), ""
	}
	return http.StatusInternalServerError, "internal server error", ""
}

// routerMessage words the errors Echo's router raises for humans.
func routerMessage(he *echo.HTTPError) string {
	switch he.Code {
	case http.StatusNotFound:
		return "nothing here: no route at this path"
	case http.StatusMethodNotAllowed:
		return "method not allowed on this route"
	}
	if m, ok := he.Message.(string); ok && m != "" {
		return strings.ToLower(m[:1]) + m[1:]
	}
	return strings.ToLower(http.StatusText(he.Code))
}

// wantsHTML reports whether the client is a browser navigating, which gets
// pages and redirects instead of JSON.
func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get(echo.HeaderAccept), echo.MIMETextHTML)
}
