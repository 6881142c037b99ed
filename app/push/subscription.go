package push

import (
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Subscription is one browser's push subscription to one topic: the URL
// at its push service that takes pushes for it, and the keys that
// encrypt them for it alone (RFC 8291).
type Subscription struct {
	Topic    string
	Endpoint string
	// P256dh is the browser's public key, an uncompressed P-256 point,
	// and Auth its 16-byte authentication secret, both base64url without
	// padding.
	P256dh string
	Auth   string
}

// ErrInvalidSubscription wraps every reason a subscription is malformed.
var ErrInvalidSubscription = errors.New("invalid push subscription")

// maxEndpointBytes bounds an endpoint; push services' are a few hundred
// bytes.
const maxEndpointBytes = 2048

// Sizes of a subscription's keys (RFC 8291, section 3.2).
const (
	p256dhBytes = 65
	authBytes   = 16
)

// ParseSubscription reads a browser's PushSubscription as its toJSON()
// gives it, {"endpoint", "expirationTime", "keys": {"p256dh", "auth"}},
// for topic. It checks the endpoint's form and the keys; whether Herald
// may post to the endpoint is the allow-list's to say.
func ParseSubscription(topic string, data []byte) (Subscription, error) {
	var body struct {
		Endpoint *string `json:"endpoint"`
		Keys     *struct {
			P256dh *string `json:"p256dh"`
			Auth   *string `json:"auth"`
		} `json:"keys"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&body); err != nil {
		return Subscription{}, fmt.Errorf("%w: the JSON is malformed: %w", ErrInvalidSubscription, err)
	}
	if dec.More() {
		return Subscription{}, fmt.Errorf("%w: the body holds more than one JSON value", ErrInvalidSubscription)
	}
	if body.Endpoint == nil || body.Keys == nil || body.Keys.P256dh == nil || body.Keys.Auth == nil {
		return Subscription{}, fmt.Errorf(`%w: want the browser's PushSubscription, {"endpoint": "...", "keys": {"p256dh": "...", "auth": "..."}}`, ErrInvalidSubscription)
	}
	if err := CheckEndpoint(*body.Endpoint); err != nil {
		return Subscription{}, err
	}
	p256dh, err := decodeKey("p256dh", *body.Keys.P256dh, p256dhBytes)
	if err != nil {
		return Subscription{}, err
	}
	if _, err := ecdh.P256().NewPublicKey(p256dh); err != nil {
		return Subscription{}, fmt.Errorf("%w: keys.p256dh is not a P-256 public key", ErrInvalidSubscription)
	}
	auth, err := decodeKey("auth", *body.Keys.Auth, authBytes)
	if err != nil {
		return Subscription{}, err
	}
	return Subscription{
		Topic:    topic,
		Endpoint: *body.Endpoint,
		P256dh:   base64.RawURLEncoding.EncodeToString(p256dh),
		Auth:     base64.RawURLEncoding.EncodeToString(auth),
	}, nil
}

// decodeKey reads a key as browsers give it, base64url with or without
// padding, and checks its size.
func decodeKey(name, value string, size int) ([]byte, error) {
	key, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(value, "="))
	if err != nil {
		return nil, fmt.Errorf("%w: keys.%s is not base64url", ErrInvalidSubscription, name)
	}
	if len(key) != size {
		return nil, fmt.Errorf("%w: keys.%s is %d bytes, want %d", ErrInvalidSubscription, name, len(key), size)
	}
	return key, nil
}

// CheckEndpoint reports why endpoint is not a push service URL, or nil:
// an absolute http or https URL with a host, and nothing that could make
// a prefix match say something else than the URL means: no login, no
// fragment, no "." or ".." in its path.
func CheckEndpoint(endpoint string) error {
	problem := func(what string) error {
		return fmt.Errorf("%w: the endpoint %s", ErrInvalidSubscription, what)
	}
	if len(endpoint) > maxEndpointBytes {
		return problem(fmt.Sprintf("is longer than %d bytes", maxEndpointBytes))
	}
	u, err := url.Parse(endpoint)
	switch {
	case err != nil:
		return problem("is not a URL")
	case u.Scheme != "https" && u.Scheme != "http":
		return problem("must be an https URL")
	case u.Host == "" || u.Opaque != "":
		return problem("has no host")
	case u.User != nil:
		return problem("must not hold a login")
	case u.Fragment != "" || strings.Contains(endpoint, "#"):
		return problem("must not hold a fragment")
	}
	for _, segment := range strings.Split(u.Path, "/") {
		if segment == "." || segment == ".." {
			return problem(`must not hold "." or ".." in its path`)
		}
	}
	return nil
}
