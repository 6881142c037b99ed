package client

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
)

// Publication is one message to publish.
type Publication struct {
	// Topic is the topic to publish to; empty leaves it to the URL's
	// ?topic=, or else to the server's default topic.
	Topic string
	// Text is the message, sent exactly as it is.
	Text string
	// IdempotencyKey names this publish: a server with a shared broker
	// (Redis) publishes one message for a key, however often it comes,
	// and answers a repeat with the first receipt. A server without one
	// checks its form and otherwise ignores it. Empty sends none.
	IdempotencyKey string
}

// Receipt is the server's acknowledgement of a publish.
type Receipt struct {
	// ID is the message's id in its topic.
	ID string `json:"id"`
	// Topic is the topic it was published to.
	Topic string `json:"topic"`
	// Subscribers is how many live subscribers it was handed to.
	Subscribers int `json:"subscribers"`
	// JSON is the receipt as the server sent it.
	JSON []byte `json:"-"`
}

// ErrNoAnswer is wrapped by Publish's error when the request went out in
// full and no answer came: the server may have published the message.
var ErrNoAnswer = errors.New("the message was sent but no answer came, so it may or may not have been published")

// maxReceiptBytes bounds the body read for a receipt, which is a few
// dozen bytes.
const maxReceiptBytes = 64 << 10

// Publish posts p to the notify route at notifyURL, as a text/plain body
// with the topic in ?topic=, so that any text goes through as it is. A
// refusal is a *Refusal.
func (c *Client) Publish(ctx context.Context, notifyURL *url.URL, p Publication) (*Receipt, error) {
	u := *notifyURL
	if p.Topic != "" {
		query := u.Query()
		query.Set("topic", p.Topic)
		u.RawQuery = query.Encode()
	}
	// What happens to a message whose request was cut off depends on
	// whether all of it went out: a server publishes nothing it has not
	// read in full.
	var sent atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) { sent.Store(info.Err == nil) }}
	req, err := c.newRequest(httptrace.WithClientTrace(ctx, trace), http.MethodPost, &u, strings.NewReader(p.Text))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	req.Header.Set("Accept", "application/json")
	if p.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", p.IdempotencyKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if sent.Load() && ctx.Err() == nil {
			return nil, fmt.Errorf("%w: %w", ErrNoAnswer, withoutURL(err))
		}
		return nil, withoutURL(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, ReadRefusal(resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReceiptBytes))
	if err != nil {
		return nil, fmt.Errorf("the server acknowledged the message (200), but its receipt could not be read: %w", err)
	}
	var receipt Receipt
	if err := json.Unmarshal(body, &receipt); err != nil || receipt.ID == "" {
		return nil, fmt.Errorf("the answer is 200 without a receipt (is this Herald's notify route?): %.80q", body)
	}
	receipt.JSON = body
	return &receipt, nil
}

// NewIdempotencyKey returns a random key for a publish: 32 hex digits.
func NewIdempotencyKey() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return fmt.Sprintf("%x", b)
}
