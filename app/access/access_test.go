package access

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// now is the clock every policy in these tests runs on.
var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

const hmacSecret = "0123456789abcdef0123456789abcdef-test"

func mustPolicy(t *testing.T, cfg Config) *Policy {
	t.Helper()
	if cfg.Anonymous == "" {
		cfg.Anonymous = AnonymousAuto
	}
	if key, err := cfg.Check(); err != nil {
		t.Fatalf("config refused at %s: %v", key, err)
	}
	p, err := NewPolicy(cfg, clock)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func hmacJWT(t *testing.T, claims Claims) string {
	t.Helper()
	token, err := Mint(hmacSecret, claims)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func topics(publish, subscribe []string) TopicClaims {
	return TopicClaims{Publish: publish, Subscribe: subscribe}
}

func at(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(now.Add(d)) }

// TestAuthorizeCoversEveryCombination runs each credential kind against
// each action and topic pattern, and each way a credential can fail.
func TestAuthorizeCoversEveryCombination(t *testing.T) {
	cfg := Config{
		Tokens: []TokenConfig{
			{Name: "team", Secret: "team-secret", Read: []string{"team-*", "status"}, Write: []string{"team-*"}},
			{Name: "ci", Secret: "ci-secret", Write: []string{"deploys"}},
			{Name: "reader", Secret: "reader-secret", Read: []string{"*"}},
			{Name: "old", Secret: "old-secret", Read: []string{"*"}, Expires: "2026-11-01"},
			{Name: "later", Secret: "later-secret", Write: []string{"*"}, Expires: "2026-11-25T12:00:01Z"},
		},
		JWT: JWTConfig{Secret: hmacSecret},
	}
	p := mustPolicy(t, cfg)
	teamJWT := hmacJWT(t, Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "alice", ExpiresAt: at(time.Hour)},
		Herald:           topics([]string{"team-a"}, []string{"team-*", "news"}),
	})
	noTopicsJWT := hmacJWT(t, Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "bob"}})
	expiredJWT := hmacJWT(t, Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "carol", ExpiresAt: at(-time.Second)},
		Herald:           topics([]string{"*"}, []string{"*"}),
	})

	tests := []struct {
		name       string
		credential string
		action     Action
		topic      string
		want       Refusal // 0: allowed
	}{
		{"anonymous may not read once a token grants reading", "", Read, "news", NoCredential},
		{"anonymous may not write once a token grants writing", "", Write, "news", NoCredential},
		{"a token reads a topic its pattern covers", "team-secret", Read, "team-a", 0},
		{"a token reads a topic named exactly", "team-secret", Read, "status", 0},
		{"a token may not read outside its patterns", "team-secret", Read, "teams", InsufficientScope},
		{"a token writes a topic its pattern covers", "team-secret", Write, "team-b", 0},
		{"a token may not write a topic it only reads", "team-secret", Write, "status", InsufficientScope},
		{"a write-only token may not read", "ci-secret", Read, "deploys", InsufficientScope},
		{"a write-only token writes its topic", "ci-secret", Write, "deploys", 0},
		{"a write-only token writes nothing else", "ci-secret", Write, "deploys2", InsufficientScope},
		{"a star reads every topic", "reader-secret", Read, "anything.at-all", 0},
		{"a star for reading gives no writing", "reader-secret", Write, "anything", InsufficientScope},
		{"an expired token is refused as expired", "old-secret", Read, "news", ExpiredCredential},
		{"a token still valid for a second works", "later-secret", Write, "news", 0},
		{"an unknown token is invalid", "guess", Read, "news", InvalidCredential},
		{"a JWT subscribes by pattern", teamJWT, Read, "team-z", 0},
		{"a JWT subscribes by name", teamJWT, Read, "news", 0},
		{"a JWT publishes where it may", teamJWT, Write, "team-a", 0},
		{"a JWT may not publish elsewhere", teamJWT, Write, "team-b", InsufficientScope},
		{"a JWT without the herald claim grants nothing", noTopicsJWT, Read, "news", InsufficientScope},
		{"an expired JWT is refused as expired", expiredJWT, Read, "news", ExpiredCredential},
		{"a JWT-shaped guess is invalid", "a.b.c", Read, "news", InvalidCredential},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := p.Authorize(tt.credential, tt.action, tt.topic)
			if tt.want == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if g == nil {
					t.Fatal("allowed without a grant")
				}
				return
			}
			var d *DeniedError
			if !errors.As(err, &d) {
				t.Fatalf("got %v (grant %+v), want refusal %d", err, g, tt.want)
			}
			if d.Reason != tt.want {
				t.Fatalf("refusal %d (%s), want %d", d.Reason, d.Message, tt.want)
			}
			if tt.credential != "" && strings.Contains(d.Message, tt.credential) {
				t.Fatalf("the refusal repeats the credential: %s", d.Message)
			}
		})
	}
}

// TestAnonymousRights covers each security.anonymous value, and auto with
// the older single tokens, which must keep meaning what they meant.
func TestAnonymousRights(t *testing.T) {
	tests := []struct {
		name            string
		cfg             Config
		read, write     bool
		tokenRead       string // a credential that must read every topic, if any
		tokenWrite      string // one that must write every topic, if any
		tokenCannotRead string // one that must not read
	}{
		{name: "auto with nothing configured lets anyone do anything", cfg: Config{}, read: true, write: true},
		{name: "auto with a publish token guards publishing only", cfg: Config{PublishToken: "p"},
			read: true, tokenWrite: "p"},
		{name: "auto with a subscribe token guards reading only", cfg: Config{SubscribeToken: "s"},
			write: true, tokenRead: "s"},
		{name: "both older tokens guard both, and each does its own part", cfg: Config{PublishToken: "p", SubscribeToken: "s"},
			tokenRead: "s", tokenWrite: "p", tokenCannotRead: "p"},
		{name: "auto with JWTs guards both", cfg: Config{JWT: JWTConfig{Secret: hmacSecret}}},
		{name: "read-write", cfg: Config{Anonymous: AnonymousReadWrite, PublishToken: "p"}, read: true, write: true},
		{name: "read-only", cfg: Config{Anonymous: AnonymousReadOnly}, read: true},
		{name: "write-only", cfg: Config{Anonymous: AnonymousWriteOnly}, write: true},
		{name: "deny", cfg: Config{Anonymous: AnonymousDeny}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPolicy(t, tt.cfg)
			for action, want := range map[Action]bool{Read: tt.read, Write: tt.write} {
				_, err := p.Authorize("", action, "news")
				if got := err == nil; got != want {
					t.Errorf("anonymous %s: allowed=%v, want %v (%v)", action, got, want, err)
				}
			}
			if tt.tokenRead != "" {
				if _, err := p.Authorize(tt.tokenRead, Read, "any"); err != nil {
					t.Errorf("token cannot read: %v", err)
				}
			}
			if tt.tokenWrite != "" {
				if _, err := p.Authorize(tt.tokenWrite, Write, "any"); err != nil {
					t.Errorf("token cannot write: %v", err)
				}
			}
			if tt.tokenCannotRead != "" {
				if _, err := p.Authorize(tt.tokenCannotRead, Read, "any"); err == nil {
					t.Error("the publish token reads, but a subscribe token is configured")
				}
			}
		})
	}
}

func TestPatterns(t *testing.T) {
	tests := []struct {
		pattern, topic string
		want           bool
	}{
		{"news", "news", true},
		{"news", "news2", false},
		{"*", "anything", true},
		{"team-*", "team-", true},
		{"team-*", "team-a", true},
		{"team-*", "team", false},
		{"*-alerts", "db-alerts", true},
		{"*-alerts", "db-alerts2", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "a-x-b-y-c", true},
		{"a*b*c", "acb", false},
		{"a*a", "a", false},
	}
	for _, tt := range tests {
		if got := (Patterns{tt.pattern}).Match(tt.topic); got != tt.want {
			t.Errorf("%q matches %q: %v, want %v", tt.pattern, tt.topic, got, tt.want)
		}
	}
}

// TestJWTFailures covers each way a JWT must be refused.
func TestJWTFailures(t *testing.T) {
	dir := t.TempDir()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	publicPEM := writePublicKey(t, dir, "rsa.pem", &rsaKey.PublicKey)
	rsaPolicy := mustPolicy(t, Config{JWT: JWTConfig{PublicKeyFile: filepath.Join(dir, "rsa.pem"), Audience: "herald", Issuer: "https://auth.example"}})
	good := Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "alice", Audience: jwt.ClaimStrings{"herald"}, Issuer: "https://auth.example", ExpiresAt: at(time.Hour)},
		Herald:           topics(nil, []string{"news"}),
	}
	signRSA := func(c Claims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, c).SignedString(rsaKey)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	with := func(change func(*Claims)) Claims {
		c := good
		change(&c)
		return c
	}
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, _ := jwt.NewWithClaims(jwt.SigningMethodRS256, good).SignedString(otherKey)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, good).SignedString(jwt.UnsafeAllowNoneSignatureType)
	// Algorithm confusion: HS256 keyed with the public key's PEM, which a
	// verifier that trusts the token's alg would accept.
	confused, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, good).SignedString(publicPEM)
	// A tampered claim: the payload swapped for one that grants more, the
	// signature kept.
	parts := strings.Split(signRSA(good), ".")
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"alice","aud":"herald","iss":"https://auth.example","herald":{"subscribe":["*"],"publish":["*"]}}`))
	tampered := strings.Join(parts, ".")

	tests := []struct {
		name  string
		token string
		want  Refusal
		says  string
	}{
		{"expired", signRSA(with(func(c *Claims) { c.ExpiresAt = at(-time.Minute) })), ExpiredCredential, "expired"},
		{"not yet valid", signRSA(with(func(c *Claims) { c.NotBefore = at(time.Minute) })), InvalidCredential, "not valid before"},
		{"wrong signature", wrongKey, InvalidCredential, "signature"},
		{"alg none", none, InvalidCredential, "signature or algorithm"},
		{"HMAC signed with the public key", confused, InvalidCredential, "signature or algorithm"},
		{"tampered claim", tampered, InvalidCredential, "signature"},
		{"wrong audience", signRSA(with(func(c *Claims) { c.Audience = jwt.ClaimStrings{"other"} })), InvalidCredential, "audience"},
		{"wrong issuer", signRSA(with(func(c *Claims) { c.Issuer = "https://evil.example" })), InvalidCredential, "issuer"},
	}
	if _, err := rsaPolicy.Authorize(signRSA(good), Read, "news"); err != nil {
		t.Fatalf("the good token is refused: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rsaPolicy.Authorize(tt.token, Read, "news")
			var d *DeniedError
			if !errors.As(err, &d) || d.Reason != tt.want {
				t.Fatalf("got %v, want refusal %d", err, tt.want)
			}
			if !strings.Contains(d.Message, tt.says) {
				t.Fatalf("%q does not say %q", d.Message, tt.says)
			}
		})
	}
}

func TestECDSAKeysVerifyTheirOwnCurveOnly(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	writePublicKey(t, dir, "ec.pem", &key.PublicKey)
	p := mustPolicy(t, Config{JWT: JWTConfig{PublicKeyFile: filepath.Join(dir, "ec.pem")}})
	claims := Claims{Herald: topics([]string{"news"}, nil)}
	es256, _ := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(key)
	if _, err := p.Authorize(es256, Write, "news"); err != nil {
		t.Fatalf("ES256 refused: %v", err)
	}
	es384, _ := jwt.NewWithClaims(jwt.SigningMethodES384, claims).SignedString(key)
	if _, err := p.Authorize(es384, Write, "news"); err == nil {
		t.Fatal("a P-256 key accepted ES384")
	}
}

func TestConfigProblemsNameTheirKey(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		key  string
		says string
	}{
		{"unknown anonymous", Config{Anonymous: "some"}, "anonymous", "not known"},
		{"token without name", Config{Tokens: []TokenConfig{{Secret: "x"}}}, "tokens[0].name", "needs a name"},
		{"two tokens, one name", Config{Tokens: []TokenConfig{{Name: "a", Secret: "x"}, {Name: "a", Secret: "y"}}}, "tokens[1].name", "earlier token"},
		{"empty secret", Config{Tokens: []TokenConfig{{Name: "a"}}}, "tokens[0].secret", "empty"},
		{"env without a name", Config{Tokens: []TokenConfig{{Name: "a", Secret: "env:"}}}, "tokens[0].secret", "needs the name"},
		{"missing file", Config{Tokens: []TokenConfig{{Name: "a", Secret: "file:" + filepath.Join(dir, "nope")}}}, "tokens[0].secret", "no such file"},
		{"bad expiry", Config{Tokens: []TokenConfig{{Name: "a", Secret: "x", Expires: "soon"}}}, "tokens[0].expires", "not a date"},
		{"empty pattern", Config{Tokens: []TokenConfig{{Name: "a", Secret: "x", Write: []string{""}}}}, "tokens[0].write", "pattern [0] is empty"},
		{"short HMAC secret", Config{JWT: JWTConfig{Secret: "short"}}, "jwt.secret", "at least 32"},
		{"both keys", Config{JWT: JWTConfig{Secret: hmacSecret, PublicKeyFile: secretFile}}, "jwt.public_key_file", "not both"},
		{"no key in the file", Config{JWT: JWTConfig{PublicKeyFile: secretFile}}, "jwt.public_key_file", "no RSA, ECDSA or Ed25519"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cfg.Anonymous == "" {
				tt.cfg.Anonymous = AnonymousAuto
			}
			key, err := tt.cfg.Check()
			if err == nil || key != tt.key || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("got %s: %v; want %s: ...%s...", key, err, tt.key, tt.says)
			}
		})
	}

	// What env:NAME holds is read when the policy is built, with the
	// server's environment.
	env := func(name string) string {
		if name == "CI_SECRET" {
			return "from-the-env"
		}
		return ""
	}
	for _, tt := range []struct {
		name string
		cfg  Config
		says string
	}{
		{"an unset variable", Config{Tokens: []TokenConfig{{Name: "a", Secret: "env:UNSET"}}}, "security.tokens[0].secret: the environment variable UNSET is not set"},
		{"one secret, two tokens", Config{Tokens: []TokenConfig{{Name: "a", Secret: "env:CI_SECRET"}, {Name: "b", Secret: "from-the-env"}}}, `security.tokens[1].secret: "b" has the same secret as "a"`},
		{"a short HMAC secret from the environment", Config{JWT: JWTConfig{Secret: "env:CI_SECRET"}}, "security.jwt.secret: the HMAC secret is 12 bytes"},
		{"an expiry that Check would have refused", Config{Tokens: []TokenConfig{{Name: "a", Secret: "x", Expires: "soon"}}}, `security.tokens[0].expires: "soon" is not a date`},
		{"an unset publish_token variable", Config{PublishToken: "env:UNSET"}, "security.publish_token: the environment variable UNSET is not set"},
	} {
		tt.cfg.Anonymous, tt.cfg.Getenv = AnonymousAuto, env
		if _, err := NewPolicy(tt.cfg, clock); err == nil || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("%s: got %v, want ...%s...", tt.name, err, tt.says)
		}
	}
	p := mustPolicy(t, Config{Getenv: env, Tokens: []TokenConfig{
		{Name: "file", Secret: "file:" + secretFile, Read: []string{"*"}},
		{Name: "env", Secret: "env:CI_SECRET", Write: []string{"*"}},
	}})
	if g, err := p.Authorize("from-a-file", Read, "news"); err != nil || g.Name != "file" {
		t.Errorf("the secret from a file: %v, %+v", err, g)
	}
	if g, err := p.Authorize("from-the-env", Write, "news"); err != nil || g.Name != "env" {
		t.Errorf("the secret from the environment: %v, %+v", err, g)
	}
}

func writePublicKey(t *testing.T, dir, name string, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return data
}

// TestACredentialHasAtLeastTheAnonymousRights runs each kind of
// credential under each security.anonymous mode: a credential may do what
// its own grants cover and whatever a client without one may do. Each
// case's config holds only that credential, so that auto's anonymous
// rights follow from what it can grant. team-a is inside every
// credential's patterns, deploys outside all of them.
func TestACredentialHasAtLeastTheAnonymousRights(t *testing.T) {
	t.Parallel()
	jwtPublisher := hmacJWT(t, Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice"}, Herald: topics([]string{"team-*"}, nil)})
	kinds := []struct {
		name       string
		cfg        Config
		credential string
	}{
		// Reads team-* and writes nothing itself.
		{"scoped token", Config{Tokens: []TokenConfig{{Name: "team", Secret: "team-secret", Read: []string{"team-*"}}}}, "team-secret"},
		// Publishes to team-* and subscribes to nothing itself.
		{"JWT", Config{JWT: JWTConfig{Secret: hmacSecret}}, jwtPublisher},
		{"publish_token", Config{PublishToken: "pub-secret"}, "pub-secret"},
		{"subscribe_token", Config{SubscribeToken: "sub-secret"}, "sub-secret"},
	}
	// What the credential may do on team-a and on deploys: "r" read, "w"
	// write.
	tests := []struct {
		kind, anonymous string
		teamA, deploys  string
	}{
		// auto: anonymous may do what no credential in the config grants.
		{"scoped token", AnonymousAuto, "rw", "w"},
		{"scoped token", AnonymousReadWrite, "rw", "rw"},
		{"scoped token", AnonymousReadOnly, "r", "r"},
		{"scoped token", AnonymousWriteOnly, "rw", "w"},
		{"scoped token", AnonymousDeny, "r", ""},
		{"JWT", AnonymousAuto, "w", ""},
		{"JWT", AnonymousReadWrite, "rw", "rw"},
		{"JWT", AnonymousReadOnly, "rw", "r"},
		{"JWT", AnonymousWriteOnly, "w", "w"},
		{"JWT", AnonymousDeny, "w", ""},
		{"publish_token", AnonymousAuto, "rw", "rw"},
		{"publish_token", AnonymousReadWrite, "rw", "rw"},
		{"publish_token", AnonymousReadOnly, "rw", "rw"},
		{"publish_token", AnonymousWriteOnly, "w", "w"},
		{"publish_token", AnonymousDeny, "w", "w"},
		{"subscribe_token", AnonymousAuto, "rw", "rw"},
		{"subscribe_token", AnonymousReadWrite, "rw", "rw"},
		{"subscribe_token", AnonymousReadOnly, "r", "r"},
		{"subscribe_token", AnonymousWriteOnly, "rw", "rw"},
		{"subscribe_token", AnonymousDeny, "r", "r"},
	}
	for _, tt := range tests {
		t.Run(tt.kind+"/"+tt.anonymous, func(t *testing.T) {
			t.Parallel()
			var cfg Config
			var credential string
			for _, k := range kinds {
				if k.name == tt.kind {
					cfg, credential = k.cfg, k.credential
				}
			}
			cfg.Anonymous = tt.anonymous
			p := mustPolicy(t, cfg)
			g, err := p.Identify(credential)
			if err != nil {
				t.Fatalf("identify: %v", err)
			}
			for topic, want := range map[string]string{"team-a": tt.teamA, "deploys": tt.deploys} {
				for _, a := range []Action{Read, Write} {
					letter := map[Action]string{Read: "r", Write: "w"}[a]
					wantAllowed := strings.Contains(want, letter)
					_, err := p.Authorize(credential, a, topic)
					if (err == nil) != wantAllowed {
						t.Errorf("%s %s: allowed=%v, want %v (%v)", a, topic, err == nil, wantAllowed, err)
					}
					var d *DeniedError
					if err != nil && (!errors.As(err, &d) || d.Reason != InsufficientScope) {
						t.Errorf("%s %s: refused with %v, want insufficient scope", a, topic, err)
					}
					// The grant Identify returns, which /access and the
					// page show, says what Authorize does.
					if g.Allows(a, topic) != wantAllowed {
						t.Errorf("%s %s: Identify's grant allows=%v, want %v", a, topic, g.Allows(a, topic), wantAllowed)
					}
				}
			}
		})
	}
}

// TestBadCredentialsAreRefusedWhateverAnonymousMayDo: adding the
// anonymous rights never turns a credential the server cannot trust into
// none. Under read-write, anonymous may do everything, and an unknown,
// badly signed or expired credential is still refused.
func TestBadCredentialsAreRefusedWhateverAnonymousMayDo(t *testing.T) {
	t.Parallel()
	otherSigner, err := Mint("another-secret-0123456789abcdefghijkl", Claims{Herald: topics([]string{"*"}, []string{"*"})})
	if err != nil {
		t.Fatal(err)
	}
	expiredJWT := hmacJWT(t, Claims{RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: at(-time.Second)}, Herald: topics(nil, []string{"*"})})
	credentials := []struct {
		name, credential string
		want             Refusal
	}{
		{"unknown token", "guess", InvalidCredential},
		{"JWT signed with another key", otherSigner, InvalidCredential},
		{"expired token", "old-secret", ExpiredCredential},
		{"expired JWT", expiredJWT, ExpiredCredential},
	}
	for _, anonymous := range []string{AnonymousAuto, AnonymousReadWrite, AnonymousReadOnly, AnonymousWriteOnly, AnonymousDeny} {
		p := mustPolicy(t, Config{
			Anonymous: anonymous,
			Tokens:    []TokenConfig{{Name: "old", Secret: "old-secret", Read: []string{"*"}, Expires: "2026-11-01"}},
			JWT:       JWTConfig{Secret: hmacSecret},
		})
		for _, c := range credentials {
			for _, a := range []Action{Read, Write} {
				_, err := p.Authorize(c.credential, a, "news")
				var d *DeniedError
				if !errors.As(err, &d) || d.Reason != c.want {
					t.Errorf("anonymous %s, %s, %s: got %v, want refusal %d", anonymous, c.name, a, err, c.want)
				}
			}
		}
	}
}

// TestAPolicyUsesTheSecretFilesAsChecked: with one SecretFiles, the policy
// holds what the files held when the config was checked, though they were
// replaced in between: a token's secret, and the JWT public key.
func TestAPolicyUsesTheSecretFilesAsChecked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("checked-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkedKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	writePublicKey(t, dir, "jwt.pem", &checkedKey.PublicKey)
	cfg := Config{
		Anonymous: AnonymousDeny,
		Tokens:    []TokenConfig{{Name: "ci", Secret: "file:" + secretFile, Read: []string{"*"}}},
		JWT:       JWTConfig{PublicKeyFile: filepath.Join(dir, "jwt.pem")},
		Files:     NewSecretFiles(),
	}
	if key, err := cfg.Check(); err != nil {
		t.Fatalf("%s: %v", key, err)
	}

	if err := os.WriteFile(secretFile, []byte("replacing-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	replacingKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	writePublicKey(t, dir, "jwt.pem", &replacingKey.PublicKey)
	p, err := NewPolicy(cfg, clock)
	if err != nil {
		t.Fatal(err)
	}

	if g, err := p.Authorize("checked-secret", Read, "news"); err != nil || g.Name != "ci" {
		t.Errorf("the secret that was checked: %v, %+v", err, g)
	}
	if _, err := p.Authorize("replacing-secret", Read, "news"); err == nil {
		t.Error("the secret written after the check was accepted")
	}
	claims := Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "ci"}, Herald: TopicClaims{Subscribe: []string{"*"}}}
	for _, signer := range []struct {
		name   string
		key    *ecdsa.PrivateKey
		accept bool
	}{{"checked", checkedKey, true}, {"replacing", replacingKey, false}} {
		token, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(signer.key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Authorize(token, Read, "news"); (err == nil) != signer.accept {
			t.Errorf("a JWT signed with the %s key: %v; want accepted: %v", signer.name, err, signer.accept)
		}
	}
}
