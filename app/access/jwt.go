package access

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// minHMACSecret is the shortest HMAC key accepted: RFC 7518 asks for a key
// at least as long as the hash, 32 bytes for HS256.
const minHMACSecret = 32

// Claims is what Herald reads from a JWT: the registered claims, and the
// topics it grants under "herald".
type Claims struct {
	jwt.RegisteredClaims
	Herald TopicClaims `json:"herald"`
}

// TopicClaims lists the topic patterns a JWT may publish and subscribe to.
type TopicClaims struct {
	Publish   []string `json:"publish,omitempty"`
	Subscribe []string `json:"subscribe,omitempty"`
}

// jwtVerifier checks JWTs against one key, accepting only the algorithms
// that belong to that key's type. Listing them is what refuses "alg: none"
// and an HMAC token signed with a public key (algorithm confusion).
type jwtVerifier struct {
	parser *jwt.Parser
	key    any
}

func newJWTVerifier(cfg JWTConfig, files *SecretFiles, getenv func(string) string, now func() time.Time) (*jwtVerifier, error) {
	var (
		key     any
		methods []string
	)
	switch {
	case cfg.Secret != "" && cfg.PublicKeyFile != "":
		return nil, errors.New("set jwt.secret or jwt.public_key_file, not both")
	case cfg.Secret != "":
		secret, err := files.ReadSecret(cfg.Secret, getenv)
		if err != nil {
			return nil, err
		}
		if err := checkHMACSecret(secret); err != nil {
			return nil, err
		}
		key, methods = []byte(secret), []string{"HS256", "HS384", "HS512"}
	default:
		public := files.publicKey(cfg.PublicKeyFile)
		if public.err != nil {
			return nil, public.err
		}
		key, methods = public.key, public.methods
	}
	options := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithTimeFunc(now)}
	if cfg.Audience != "" {
		options = append(options, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		options = append(options, jwt.WithIssuer(cfg.Issuer))
	}
	return &jwtVerifier{parser: jwt.NewParser(options...), key: key}, nil
}

// checkHMACSecret refuses an HMAC key too short to be safe.
func checkHMACSecret(secret string) error {
	if len(secret) < minHMACSecret {
		return fmt.Errorf("the HMAC secret is %d bytes; use at least %d, such as the output of: openssl rand -base64 32", len(secret), minHMACSecret)
	}
	return nil
}

// publicKey is a PEM public key and the algorithms it verifies, or why
// the file holds none.
type publicKey struct {
	key     any
	methods []string
	err     error
}

// parsePublicKey reads the public key in data, which the file at path held,
// or readErr, which reading it gave.
func parsePublicKey(path string, data []byte, readErr error) *publicKey {
	if readErr != nil {
		return &publicKey{err: fmt.Errorf("read the public key: %w", readErr)}
	}
	if key, err := jwt.ParseRSAPublicKeyFromPEM(data); err == nil {
		return &publicKey{key: key, methods: []string{"RS256", "RS384", "RS512"}}
	}
	if key, err := jwt.ParseECPublicKeyFromPEM(data); err == nil {
		return &publicKey{key: key, methods: []string{ecdsaMethod(key)}}
	}
	if key, err := jwt.ParseEdPublicKeyFromPEM(data); err == nil {
		return &publicKey{key: key, methods: []string{"EdDSA"}}
	}
	return &publicKey{err: fmt.Errorf("%s holds no RSA, ECDSA or Ed25519 public key in PEM form", path)}
}

// ecdsaMethod is the one algorithm that fits an ECDSA key's curve.
func ecdsaMethod(key *ecdsa.PublicKey) string {
	switch key.Curve {
	case elliptic.P384():
		return "ES384"
	case elliptic.P521():
		return "ES512"
	}
	return "ES256"
}

// verify checks a JWT and returns its grant.
func (v *jwtVerifier) verify(token string) (*Grant, error) {
	var claims Claims
	_, err := v.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return v.key, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, denied(ExpiredCredential, "the JWT expired at %s", claims.ExpiresAt.UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return nil, denied(InvalidCredential, "the JWT is not valid before %s", claims.NotBefore.UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return nil, denied(InvalidCredential, "the JWT is meant for another audience")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return nil, denied(InvalidCredential, "the JWT comes from another issuer")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return nil, denied(InvalidCredential, "the JWT's signature or algorithm is not accepted by this server")
	case err != nil:
		return nil, denied(InvalidCredential, "the JWT is malformed")
	}
	read, err := ParsePatterns(claims.Herald.Subscribe)
	if err != nil {
		return nil, denied(InvalidCredential, "the JWT's herald.subscribe claim: %v", err)
	}
	write, err := ParsePatterns(claims.Herald.Publish)
	if err != nil {
		return nil, denied(InvalidCredential, "the JWT's herald.publish claim: %v", err)
	}
	g := &Grant{Name: claims.Subject, Kind: "jwt", Read: read, Write: write}
	if g.Name == "" {
		g.Name = "(no subject)"
	}
	if claims.ExpiresAt != nil {
		g.Expires = claims.ExpiresAt.Time
	}
	return g, nil
}

// Mint signs a JWT for the given claims with an HMAC secret, for
// "herald token". It refuses a secret too short to be safe.
func Mint(secret string, claims Claims) (string, error) {
	if err := checkHMACSecret(secret); err != nil {
		return "", err
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
}
