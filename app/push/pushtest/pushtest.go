// Package pushtest is a push service for tests, as browsers' push services
// are to Herald (RFC 8030): it takes each push, decrypts its payload with
// the subscription's private key (RFC 8291, aes128gcm) and verifies its
// VAPID JWT (RFC 8292), so that a test sees what a browser would, and
// whether a real push service would have taken it. The decryption is
// written here, apart from the library Herald encrypts with, so that the
// two check each other. Only tests import it.
package pushtest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/hkdf"
)

// hangGuard bounds how long a test waits for a push that never comes. It
// is not an assertion about speed: waits end on the push itself.
const hangGuard = time.Minute

// Service is a push service on a loopback port, until the test ends.
type Service struct {
	// URL is its origin, such as http://127.0.0.1:41234; push.endpoints
	// takes URL + "/".
	URL string

	server   *httptest.Server
	received chan Push
	release  chan struct{} // closed when the test ends: hanging requests return

	mu            sync.Mutex
	subscriptions map[string]*Subscription // by the id in their endpoint's path
	subject       string
	publicKey     string
	answers       map[string][]Answer // per subscription id, in order
	hang          bool
}

// Push is one request the service took.
type Push struct {
	// Subscription is the id of the subscription it was for.
	Subscription string
	// Payload is the decrypted payload; nil when Err says why there is
	// none.
	Payload []byte
	// BodyBytes is how long the encrypted body was.
	BodyBytes int
	// TTL is the TTL header: how long the service should keep the push.
	TTL string
	// Key is the VAPID public key the request named (k=).
	Key string
	// Claims are the VAPID JWT's claims, once verified.
	Audience, Subject string
	Expires           time.Time
	// Err says what a real push service would have refused the request
	// for, or that the payload did not decrypt; nil when all was well.
	Err error
}

// Answer is how the service answers one push: the status and, when set,
// a Retry-After or Location header; or, with Hang, never, until the
// request ends.
type Answer struct {
	Status     int
	RetryAfter string
	Location   string
	Hang       bool
}

// Start runs a push service until the test ends.
func Start(t testing.TB) *Service {
	t.Helper()
	s := &Service{
		received:      make(chan Push, 1024),
		release:       make(chan struct{}),
		subscriptions: map[string]*Subscription{},
		answers:       map[string][]Answer{},
	}
	s.server = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.server.URL
	t.Cleanup(func() {
		close(s.release)
		s.server.Close()
	})
	return s
}

// Expect sets what every push's VAPID claims must hold: the subject, and
// the key its JWT is signed with (the server's GET /push/key).
func (s *Service) Expect(subject, publicKey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subject, s.publicKey = subject, publicKey
}

// Answer makes the next pushes for sub get these answers, in order; after
// them, pushes get 201 again.
func (s *Service) Answer(sub *Subscription, answers ...Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[sub.ID] = append(s.answers[sub.ID], answers...)
}

// Hang makes every push from now on wait, unanswered, until its request
// ends or the test does: a push service that never answers.
func (s *Service) Hang() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hang = true
}

// Next returns the next push the service took, whatever it was answered,
// and fails the test if none comes.
func (s *Service) Next(t testing.TB) Push {
	t.Helper()
	select {
	case p := <-s.received:
		return p
	case <-time.After(hangGuard):
		t.Fatal("no push arrived")
		return Push{}
	}
}

// Subscription is a browser's subscription with this service: its
// endpoint, and its keys, private ones included.
type Subscription struct {
	ID       string
	Endpoint string
	// P256dh and Auth are as the browser gives them: base64url without
	// padding.
	P256dh, Auth string
	private      *ecdh.PrivateKey
	auth         []byte
}

// Subscribe makes a subscription, as a browser's PushManager.subscribe
// would.
func (s *Service) Subscribe(t testing.TB) *Subscription {
	t.Helper()
	sub := newBrowser(t)
	sub.ID = rand.Text()
	sub.Endpoint = s.URL + "/push/" + sub.ID
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subscriptions[sub.ID] = sub
	return sub
}

// Keys are a browser's keys for a subscription, as its PushSubscription
// gives them, for tests of what keeps subscriptions.
func Keys(t testing.TB) (p256dh, auth string) {
	t.Helper()
	sub := newBrowser(t)
	return sub.P256dh, sub.Auth
}

// newBrowser makes a subscription's keys: a P-256 key pair and an auth
// secret.
func newBrowser(t testing.TB) *Subscription {
	t.Helper()
	private, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	return &Subscription{
		P256dh:  base64.RawURLEncoding.EncodeToString(private.PublicKey().Bytes()),
		Auth:    base64.RawURLEncoding.EncodeToString(auth),
		private: private,
		auth:    auth,
	}
}

// JSON is the subscription as the browser's PushSubscription.toJSON()
// gives it, which the page posts to Herald.
func (sub *Subscription) JSON() string {
	b, _ := json.Marshal(map[string]any{
		"endpoint":       sub.Endpoint,
		"expirationTime": nil,
		"keys":           map[string]string{"p256dh": sub.P256dh, "auth": sub.Auth},
	})
	return string(b)
}

func (s *Service) serve(w http.ResponseWriter, r *http.Request) {
	id, found := strings.CutPrefix(r.URL.Path, "/push/")
	s.mu.Lock()
	sub := s.subscriptions[id]
	subject, publicKey, hang := s.subject, s.publicKey, s.hang
	answer := Answer{Status: http.StatusCreated}
	if queue := s.answers[id]; len(queue) > 0 {
		answer, s.answers[id] = queue[0], queue[1:]
	}
	s.mu.Unlock()
	if !found || sub == nil || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	p := Push{Subscription: id, TTL: r.Header.Get("TTL")}
	body, err := io.ReadAll(r.Body)
	p.BodyBytes = len(body)
	p.Err = errors.Join(err, s.verify(r, &p, subject, publicKey))
	if p.Err == nil {
		p.Payload, p.Err = decrypt(body, sub.private, sub.auth)
	}
	select {
	case s.received <- p:
	default:
		panic("pushtest: more than 1024 pushes that no test read")
	}
	if hang || answer.Hang {
		select {
		case <-r.Context().Done():
		case <-s.release:
		}
		return
	}
	if answer.RetryAfter != "" {
		w.Header().Set("Retry-After", answer.RetryAfter)
	}
	if answer.Location != "" {
		w.Header().Set("Location", answer.Location)
	}
	w.WriteHeader(answer.Status)
}

// verify checks the request's headers as a push service would: the
// content coding, the TTL, and the VAPID Authorization header (RFC 8292):
// "vapid t=JWT, k=KEY", with the JWT signed by KEY with ES256, for this
// service's origin, expiring within 24 hours, from the expected subject.
func (s *Service) verify(r *http.Request, p *Push, subject, publicKey string) error {
	if got := r.Header.Get("Content-Encoding"); got != "aes128gcm" {
		return fmt.Errorf("Content-Encoding %q, want aes128gcm", got)
	}
	if _, err := strconv.Atoi(p.TTL); err != nil {
		return fmt.Errorf("TTL %q is not a number of seconds", p.TTL)
	}
	scheme, params, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if scheme != "vapid" {
		return fmt.Errorf("Authorization scheme %q, want vapid", scheme)
	}
	var token string
	for _, param := range strings.Split(params, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(param), "=")
		switch name {
		case "t":
			token = value
		case "k":
			p.Key = value
		}
	}
	if p.Key != publicKey {
		return fmt.Errorf("k=%q, want the server's key %q", p.Key, publicKey)
	}
	point, err := base64.RawURLEncoding.DecodeString(p.Key)
	if err != nil {
		return fmt.Errorf("k is not base64url: %w", err)
	}
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return fmt.Errorf("k is not a P-256 point: %w", err)
	}
	origin := "http://" + r.Host
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithExpirationRequired(), jwt.WithAudience(origin)); err != nil {
		return fmt.Errorf("VAPID JWT: %w", err)
	}
	p.Audience = origin
	p.Subject, _ = claims["sub"].(string)
	if expires, err := claims.GetExpirationTime(); err == nil {
		p.Expires = expires.Time
	}
	if p.Subject != subject {
		return fmt.Errorf("VAPID sub %q, want %q", p.Subject, subject)
	}
	if p.Expires.After(time.Now().Add(24 * time.Hour)) {
		return fmt.Errorf("VAPID exp %s is more than 24 hours away", p.Expires)
	}
	return nil
}

// decrypt undoes RFC 8291's encryption of a push message: the body is one
// aes128gcm record (RFC 8188) whose header carries the salt, the record
// size and the application server's ephemeral public key.
func decrypt(body []byte, private *ecdh.PrivateKey, auth []byte) ([]byte, error) {
	const headerBytes = 16 + 4 + 1 + 65
	if len(body) < headerBytes || body[20] != 65 {
		return nil, fmt.Errorf("body of %d bytes has no aes128gcm header with a P-256 key", len(body))
	}
	salt, recordSize := body[:16], binary.BigEndian.Uint32(body[16:20])
	serverKey, err := ecdh.P256().NewPublicKey(body[21:headerBytes])
	if err != nil {
		return nil, fmt.Errorf("the header's key: %w", err)
	}
	ciphertext := body[headerBytes:]
	if uint32(len(ciphertext)) > recordSize {
		return nil, fmt.Errorf("%d bytes of records with a record size of %d: a push is one record", len(ciphertext), recordSize)
	}
	secret, err := private.ECDH(serverKey)
	if err != nil {
		return nil, err
	}
	// The input keying material binds the shared secret to the
	// subscription's auth secret and both public keys.
	info := append([]byte("WebPush: info\x00"), private.PublicKey().Bytes()...)
	info = append(info, serverKey.Bytes()...)
	ikm := read(hkdf.New(sha256.New, secret, auth, info), 32)
	prk := hkdf.Extract(sha256.New, ikm, salt)
	contentKey := read(hkdf.Expand(sha256.New, prk, []byte("Content-Encoding: aes128gcm\x00")), 16)
	nonce := read(hkdf.Expand(sha256.New, prk, []byte("Content-Encoding: nonce\x00")), 12)
	block, err := aes.NewCipher(contentKey)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	plain, err := gcm.Open(nil, nonce, ciphertext, nil)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	// The last record ends with the delimiter 2, then zeros of padding.
	end := len(plain)
	for end > 0 && plain[end-1] == 0 {
		end--
	}
	if end == 0 || plain[end-1] != 2 {
		return nil, errors.New("the record does not end with the last-record delimiter")
	}
	return plain[:end-1], nil
}

func read(r io.Reader, n int) []byte {
	b := make([]byte, n)
	io.ReadFull(r, b) // HKDF yields far more than any n here
	return b
}
