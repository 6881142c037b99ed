package handlers

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"herald/app"
)

// streamParams is what a subscriber asks for on the WebSocket and SSE
// routes: ?topic=, ?since= and ?format=.
type streamParams struct {
	topic  string
	resume bool   // since was given: replay history first
	since  uint64 // replay messages with ids above this
	json   bool   // each message as {"id","topic","time","msg"}
	// presence asks for a notice whenever the topic's subscriber count
	// changes; JSON mode only, since plain frames must be messages.
	presence bool
}

// subscribe checks a subscription request's parameters and registers the
// subscriber, for the WebSocket and SSE routes alike. alwaysNotices says
// the transport can always tell the client of lost messages.
func subscribe(node *app.Node, r *http.Request, query url.Values, label string, alwaysNotices bool) (*app.Subscriber, streamParams, error) {
	params, err := parseStreamParams(r, query)
	if err != nil {
		return nil, streamParams{}, err
	}
	sub, err := node.Subscribe(r.Context(), app.SubscribeRequest{
		Topic: params.topic, Label: label, Resume: params.resume, Since: params.since, Presence: params.presence,
		// A client that can be told what it lost skips ahead when too far
		// behind, rather than being cut off.
		SkipAhead: alwaysNotices || params.json,
	})
	return sub, params, err
}

// lastEventIDHeader carries the id an EventSource saw last when it
// reconnects.
const lastEventIDHeader = "Last-Event-ID"

// parseStreamParams reads a subscription request. Last-Event-ID, which an
// EventSource sends when it reconnects, outranks ?since=: the URL keeps the
// position the stream started from, the header says how far it got.
// query is the request's parsed query (c.QueryParams).
func parseStreamParams(r *http.Request, query url.Values) (streamParams, error) {
	topic, err := topicParam(query)
	if err != nil {
		return streamParams{}, err
	}
	p := streamParams{topic: topic}
	if query.Has("since") {
		if p.since, err = parseID("since", query.Get("since")); err != nil {
			return streamParams{}, err
		}
		p.resume = true
	}
	if v := r.Header.Get(lastEventIDHeader); v != "" {
		if p.since, err = parseID(lastEventIDHeader, v); err != nil {
			return streamParams{}, err
		}
		p.resume = true
	}
	switch format := query.Get("format"); format {
	case "", "text":
	case "json":
		p.json = true
	default:
		return streamParams{}, newClientError(http.StatusBadRequest, "format %q is not known: use text or json", clip(format))
	}
	switch presence := query.Get("presence"); presence {
	case "", "0", "false":
	case "1", "true":
		if !p.json {
			return streamParams{}, newClientError(http.StatusBadRequest, "presence needs format=json: in text mode every frame is a message")
		}
		p.presence = true
	default:
		return streamParams{}, newClientError(http.StatusBadRequest, "presence %q is not known: use 1 or 0", clip(presence))
	}
	return p, nil
}

// topicParam reads ?topic= from values: absent means the default topic,
// anything else must be a valid name.
func topicParam(values url.Values) (string, error) {
	if !values.Has("topic") {
		return app.DefaultTopic, nil
	}
	// The error handler turns app.ErrInvalidTopic into a 400 that says why.
	topic := values.Get("topic")
	if err := app.CheckTopic(topic); err != nil {
		return "", err
	}
	return topic, nil
}

// parseID reads a message id: a decimal number, 0 meaning "from the start".
func parseID(name, v string) (uint64, error) {
	id, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		reason := "is not a message id (a whole number, 0 or more)"
		if errors.Is(err, strconv.ErrRange) {
			reason = "is too large to be a message id"
		}
		return 0, newClientError(http.StatusBadRequest, "%s %q %s", name, clip(v), reason)
	}
	return id, nil
}

// clip shortens what a client sent before an error message quotes it.
func clip(s string) string {
	const keep = 32
	if len(s) <= keep {
		return s
	}
	return s[:keep] + "…"
}
