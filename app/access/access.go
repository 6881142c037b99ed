// Package access decides who may read and write which topics. It is the
// one place that decision is made: every route asks Policy.Authorize.
//
// A client presents at most one credential, which is one of:
//   - a scoped token from the config, with a name, the topic patterns it
//     may read and write, and an optional expiry;
//   - a JWT whose "herald" claim lists the topic patterns it may publish
//     and subscribe to, signed with an HMAC secret or a private key;
//   - nothing, which gets the anonymous rights.
//
// A credential's rights are its own grants and the anonymous rights
// together, so that presenting one never takes away what a client without
// one may do. A credential the server cannot trust is still refused.
package access

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Action is what a client asks to do with a topic.
type Action int

// The two actions.
const (
	Read  Action = iota + 1 // subscribe, over WebSocket or SSE
	Write                   // publish
)

func (a Action) String() string {
	if a == Write {
		return "publish to"
	}
	return "read"
}

// Anonymous rights, as security.anonymous names them.
const (
	AnonymousAuto      = "auto" // an action needs a credential once any credential grants it
	AnonymousReadWrite = "read-write"
	AnonymousReadOnly  = "read-only"
	AnonymousWriteOnly = "write-only"
	AnonymousDeny      = "deny"
)

// Grant is what one credential may do.
type Grant struct {
	// Name says whose credential this is, for logs and the page: a token's
	// name or a JWT's subject. It is never the secret.
	Name string
	// Kind is "token", "jwt" or "anonymous".
	Kind string
	// Read and Write are the topic patterns this client may read and
	// write: a credential's own, with the anonymous ones added.
	Read, Write Patterns
	// Expires is when the credential stops working; zero never.
	Expires time.Time
}

// Allows reports whether g covers doing a to topic.
func (g *Grant) Allows(a Action, topic string) bool {
	if a == Write {
		return g.Write.Match(topic)
	}
	return g.Read.Match(topic)
}

// withAnonymous is g with what clients without a credential may do added.
func (g *Grant) withAnonymous(anonymous *Grant) *Grant {
	merged := *g
	merged.Read = g.Read.union(anonymous.Read)
	merged.Write = g.Write.union(anonymous.Write)
	return &merged
}

// Anonymous reports whether g is the grant of a client with no credential.
func (g *Grant) Anonymous() bool { return g.Kind == "anonymous" }

// Refusal is why a request was refused.
type Refusal int

// The refusals, each with its own status: the first three are 401, the
// last 403.
const (
	NoCredential      Refusal = iota + 1 // a credential is needed and none came
	InvalidCredential                    // it is not one this server knows, or its signature is wrong
	ExpiredCredential                    // it was good, and its time is over
	InsufficientScope                    // it is good, but does not cover this topic
)

// DeniedError is a refusal, with a message for the client that never
// repeats the credential.
type DeniedError struct {
	Reason  Refusal
	Message string
}

func (e *DeniedError) Error() string { return e.Message }

func denied(reason Refusal, format string, args ...any) *DeniedError {
	return &DeniedError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Policy holds the credentials a server accepts. It is safe for concurrent
// use and does not change once built.
type Policy struct {
	tokens    map[[sha256.Size]byte]*Grant
	jwt       *jwtVerifier // nil when JWTs are not accepted
	anonymous *Grant
	now       func() time.Time
}

// NewPolicy builds the policy that cfg describes, reading the secrets it
// refers to (files through cfg.Files). now is the clock; nil means
// time.Now.
func NewPolicy(cfg Config, now func() time.Time) (*Policy, error) {
	if now == nil {
		now = time.Now
	}
	anonymous, err := cfg.anonymousGrant()
	if err != nil {
		return nil, err
	}
	p := &Policy{tokens: map[[sha256.Size]byte]*Grant{}, anonymous: anonymous, now: now}
	for i, t := range cfg.allTokens() {
		at := func(field string) string { return fmt.Sprintf("tokens[%d].%s", i, field) }
		if i >= len(cfg.Tokens) {
			at = func(string) string { return t.Name } // publish_token or subscribe_token, which is its secret
		}
		g, secret, err := t.grant(at, cfg.Files, cfg.Getenv)
		if err != nil {
			return nil, err
		}
		digest := sha256.Sum256([]byte(secret))
		if other, taken := p.tokens[digest]; taken {
			return nil, &KeyError{Key: at("secret"), Err: fmt.Errorf("%q has the same secret as %q", t.Name, other.Name)}
		}
		p.tokens[digest] = g.withAnonymous(anonymous)
	}
	if cfg.JWT.enabled() {
		v, err := newJWTVerifier(cfg.JWT, cfg.Files, cfg.Getenv, now)
		if err != nil {
			key := "jwt.secret"
			if cfg.JWT.PublicKeyFile != "" {
				key = "jwt.public_key_file"
			}
			return nil, &KeyError{Key: key, Err: err}
		}
		p.jwt = v
	}
	return p, nil
}

// Identify returns the grant of credential, "" meaning none was presented:
// its own rights with the anonymous ones added.
// A credential that this server does not know is refused rather than
// treated as none, so that a mistyped or expired token says so instead of
// quietly getting less; only a server that takes no credentials at all
// ignores one, as it always did.
func (p *Policy) Identify(credential string) (*Grant, error) {
	if credential == "" || !p.TakesCredentials() {
		return p.anonymous, nil
	}
	if g, ok := p.tokens[sha256.Sum256([]byte(credential))]; ok {
		if !g.Expires.IsZero() && !p.now().Before(g.Expires) {
			return nil, denied(ExpiredCredential, "the token %q expired at %s", g.Name, g.Expires.UTC().Format(time.RFC3339))
		}
		return g, nil
	}
	if p.jwt != nil && strings.Count(credential, ".") == 2 {
		g, err := p.jwt.verify(credential)
		if err != nil {
			return nil, err
		}
		return g.withAnonymous(p.anonymous), nil
	}
	return nil, denied(InvalidCredential, "the token is not valid on this server")
}

// Authorize decides whether the client with credential may do a to topic,
// and returns its grant when it may.
func (p *Policy) Authorize(credential string, a Action, topic string) (*Grant, error) {
	g, err := p.Identify(credential)
	if err != nil {
		return nil, err
	}
	if g.Allows(a, topic) {
		return g, nil
	}
	if g.Anonymous() {
		return nil, denied(NoCredential, "to %s topic %q, send a token: the header Authorization: Bearer TOKEN, ?token=TOKEN, or the cookie %s",
			a, topic, CookieName)
	}
	return nil, denied(InsufficientScope, "the %s %q may not %s topic %q", g.Kind, g.Name, a, topic)
}

// TakesCredentials reports whether any token or JWT is accepted, which is
// when a client has reason to present one.
func (p *Policy) TakesCredentials() bool { return len(p.tokens) > 0 || p.jwt != nil }

// Anonymous is what clients without a credential may do.
func (p *Policy) Anonymous() *Grant { return p.anonymous }

// CookieName is the cookie a browser may carry its token in, since
// EventSource and the WebSocket constructor cannot set headers.
const CookieName = "herald_token"

// KeyError is a problem with one key of the access settings, which Key
// names relative to security, such as tokens[0].secret.
type KeyError struct {
	Key string
	Err error
}

// Error names the key under security and its problem.
func (e *KeyError) Error() string { return "security." + e.Key + ": " + e.Err.Error() }

// Unwrap is the problem, such as ErrNoSecret.
func (e *KeyError) Unwrap() error { return e.Err }

// ErrNoSecret reports a secret reference that points at nothing.
var ErrNoSecret = errors.New("the secret is empty")
