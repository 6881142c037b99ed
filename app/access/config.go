package access

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// Config is the access part of Herald's configuration (security.*).
type Config struct {
	// Anonymous is what clients without a credential may do: auto,
	// read-write, read-only, write-only or deny. Auto lets them do an
	// action until some credential is configured that grants it, which is
	// how publish_token and subscribe_token always worked.
	Anonymous string
	// Tokens are the scoped tokens.
	Tokens []TokenConfig
	// JWT says how JWTs are checked; JWTs are refused while it is empty.
	JWT JWTConfig
	// PublishToken and SubscribeToken are the older single secrets, kept as
	// shorthand for a token that may write, or read, every topic.
	PublishToken, SubscribeToken string
	// Getenv reads the environment for env:NAME secrets; nil is os.Getenv.
	Getenv func(string) string
	// Files reads the files that secrets are kept in. Check and NewPolicy
	// given the same one read each file once; nil reads afresh.
	Files *SecretFiles
}

// TokenConfig is one scoped token (an item of security.tokens).
type TokenConfig struct {
	// Name is how logs and the page speak of the token.
	Name string `yaml:"name"`
	// Secret is what clients send: the token itself, or env:NAME to read
	// it from an environment variable, or file:PATH to read it from a file.
	Secret string `yaml:"secret"`
	// Read and Write are topic patterns: a name, or a name with * standing
	// for any run of characters (team-*), or * for every topic.
	Read  []string `yaml:"read"`
	Write []string `yaml:"write"`
	// Expires is when the token stops working, as 2027-01-31 (midnight UTC)
	// or an RFC 3339 time; empty never.
	Expires string `yaml:"expires"`
}

// JWTConfig says how JWTs are checked (security.jwt).
type JWTConfig struct {
	// Secret is the HMAC key (HS256, HS384, HS512): the key itself, or
	// env:NAME, or file:PATH. At least 32 bytes.
	Secret string `yaml:"secret"`
	// PublicKeyFile is a PEM file with an RSA public key (RS256, RS384,
	// RS512) or an ECDSA one (ES256, ES384, ES512), instead of Secret.
	PublicKeyFile string `yaml:"public_key_file"`
	// Audience and Issuer, when set, must be the token's aud and iss.
	Audience string `yaml:"audience"`
	Issuer   string `yaml:"issuer"`
}

func (c JWTConfig) enabled() bool { return c.Secret != "" || c.PublicKeyFile != "" }

// Check reports the first problem with cfg, naming the key relative to
// security: "tokens[0].read", say, for the first token's. It checks the form of the secrets, not
// what env:NAME holds, which NewPolicy reads with the server's own
// environment.
func (c Config) Check() (key string, err error) {
	switch c.Anonymous {
	case AnonymousAuto, AnonymousReadWrite, AnonymousReadOnly, AnonymousWriteOnly, AnonymousDeny:
	default:
		return "anonymous", fmt.Errorf("%q is not known: use auto, read-write, read-only, write-only or deny", c.Anonymous)
	}
	names := map[string]bool{}
	for i, t := range c.Tokens {
		at := func(field string) string { return fmt.Sprintf("tokens[%d].%s", i, field) }
		if t.Name == "" {
			return at("name"), fmt.Errorf("every token needs a name, for logs")
		}
		if names[t.Name] {
			return at("name"), fmt.Errorf("%q is the name of an earlier token too", t.Name)
		}
		names[t.Name] = true
		if err := c.Files.checkSecretRef(t.Secret); err != nil {
			return at("secret"), err
		}
		for field, patterns := range map[string][]string{"read": t.Read, "write": t.Write} {
			if _, err := ParsePatterns(patterns); err != nil {
				return at(field), err
			}
		}
		if _, err := parseExpiry(t.Expires); err != nil {
			return at("expires"), err
		}
	}
	if c.JWT.Secret != "" && c.JWT.PublicKeyFile != "" {
		return "jwt.public_key_file", fmt.Errorf("set jwt.secret or jwt.public_key_file, not both")
	}
	if c.JWT.Secret != "" {
		if err := c.Files.checkSecretRef(c.JWT.Secret); err != nil {
			return "jwt.secret", err
		}
		if !IsSecretReference(c.JWT.Secret) {
			if err := checkHMACSecret(c.JWT.Secret); err != nil {
				return "jwt.secret", err
			}
		}
	}
	if c.JWT.PublicKeyFile != "" {
		if err := c.Files.publicKey(c.JWT.PublicKeyFile).err; err != nil {
			return "jwt.public_key_file", err
		}
	}
	return "", nil
}

// allTokens is the scoped tokens with the older single tokens added.
func (c Config) allTokens() []TokenConfig {
	tokens := append([]TokenConfig(nil), c.Tokens...)
	if c.PublishToken != "" {
		tokens = append(tokens, TokenConfig{Name: "publish_token", Secret: c.PublishToken, Write: []string{"*"}})
	}
	if c.SubscribeToken != "" {
		tokens = append(tokens, TokenConfig{Name: "subscribe_token", Secret: c.SubscribeToken, Read: []string{"*"}})
	}
	return tokens
}

// anonymousGrant is what clients without a credential may do.
func (c Config) anonymousGrant() (*Grant, error) {
	every := Patterns{"*"}
	g := &Grant{Name: "anonymous", Kind: "anonymous"}
	switch c.Anonymous {
	case AnonymousReadWrite:
		g.Read, g.Write = every, every
	case AnonymousReadOnly:
		g.Read = every
	case AnonymousWriteOnly:
		g.Write = every
	case AnonymousDeny:
	case AnonymousAuto, "":
		reading, writing := c.JWT.enabled(), c.JWT.enabled()
		for _, t := range c.allTokens() {
			reading = reading || len(t.Read) > 0
			writing = writing || len(t.Write) > 0
		}
		if !reading {
			g.Read = every
		}
		if !writing {
			g.Write = every
		}
	default:
		return nil, fmt.Errorf("anonymous: %q is not known", c.Anonymous)
	}
	return g, nil
}

// grant is the Grant t describes, with its secret read. A problem comes
// as a KeyError whose key at names from the field's.
func (t TokenConfig) grant(at func(field string) string, files *SecretFiles, getenv func(string) string) (*Grant, string, error) {
	secret, err := files.ReadSecret(t.Secret, getenv)
	if err != nil {
		return nil, "", &KeyError{Key: at("secret"), Err: err}
	}
	read, err := ParsePatterns(t.Read)
	if err != nil {
		return nil, "", &KeyError{Key: at("read"), Err: err}
	}
	write, err := ParsePatterns(t.Write)
	if err != nil {
		return nil, "", &KeyError{Key: at("write"), Err: err}
	}
	expires, err := parseExpiry(t.Expires)
	if err != nil {
		return nil, "", &KeyError{Key: at("expires"), Err: err}
	}
	return &Grant{Name: t.Name, Kind: "token", Read: read, Write: write, Expires: expires}, secret, nil
}

// ReadSecret resolves a secret as the config gives it: env:NAME reads the
// environment variable NAME with getenv (nil is os.Getenv), file:PATH
// is what the file held (without its trailing newline), and anything else
// is the secret itself.
func (f *SecretFiles) ReadSecret(ref string, getenv func(string) string) (string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var secret string
	switch {
	case strings.HasPrefix(ref, "env:"):
		name := strings.TrimPrefix(ref, "env:")
		secret = getenv(name)
		if secret == "" {
			return "", fmt.Errorf("the environment variable %s is not set or empty", name)
		}
	case strings.HasPrefix(ref, "file:"):
		data, err := f.readFile(strings.TrimPrefix(ref, "file:"))
		if err != nil {
			return "", fmt.Errorf("read the secret: %w", err)
		}
		secret = strings.TrimRight(string(data), "\r\n")
		if secret == "" {
			return "", fmt.Errorf("the file %s is empty", strings.TrimPrefix(ref, "file:"))
		}
	default:
		secret = ref
		if secret == "" {
			return "", ErrNoSecret
		}
	}
	if secret != strings.TrimSpace(secret) {
		return "", fmt.Errorf("the secret has spaces at its start or end, which clients would not send")
	}
	return secret, nil
}

// checkSecretRef checks a secret's form without reading the environment:
// a literal secret or a file is read, an env: reference needs a name.
func (f *SecretFiles) checkSecretRef(ref string) error {
	if name, isEnv := strings.CutPrefix(ref, "env:"); isEnv {
		if name == "" {
			return fmt.Errorf("env: needs the name of an environment variable, such as env:HERALD_CI_TOKEN")
		}
		return nil
	}
	_, err := f.ReadSecret(ref, nil)
	return err
}

// IsSecretReference reports whether ref names where a secret is rather
// than being one, so that it may be shown.
func IsSecretReference(ref string) bool {
	return strings.HasPrefix(ref, "env:") || strings.HasPrefix(ref, "file:")
}

// parseExpiry reads an expiry: "" (never), a date (midnight UTC at its
// start) or an RFC 3339 time.
func parseExpiry(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a date (2027-01-31) or an RFC 3339 time (2027-01-31T12:00:00Z)", s)
	}
	return t, nil
}
