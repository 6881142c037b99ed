package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"herald/app/access"
	"herald/app/config"
)

// mintToken is "herald token": it signs a JWT with the HMAC secret in
// security.jwt.secret, so that a user can hand out a scoped credential
// with one command. Servers that verify with a public key get their
// tokens from whoever holds the private key.
func mintToken(args []string, configPath string, configGiven bool, getenv func(string) string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("herald token", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.StringVar(&configPath, "config", configPath, "read security.jwt from `FILE`")
	subject := flags.String("sub", "", "who the token is for, shown in logs and on the page (required)")
	publish := flags.String("publish", "", "topic `PATTERNS` it may publish to, comma-separated, such as deploys,team-*")
	subscribe := flags.String("subscribe", "", "topic `PATTERNS` it may subscribe to, comma-separated; * is every topic")
	ttl := flags.Duration("ttl", 24*time.Hour, "how long it is valid; 0 never expires")
	flags.Usage = func() {
		fmt.Fprintf(stderr, "Usage: herald token -sub NAME [-publish PATTERNS] [-subscribe PATTERNS] [-ttl 24h] [-config FILE]\n\n"+
			"Prints a JWT signed with security.jwt.secret, for the topics given.\n\nFlags:\n")
		flags.PrintDefaults()
	}
	if err := parseCommandFlags(flags, args, &configGiven); err != nil {
		return err
	}
	switch {
	case flags.NArg() > 0:
		return fmt.Errorf("token: unexpected argument %q: patterns go in -publish and -subscribe", flags.Arg(0))
	case *subject == "":
		return errors.New("token: -sub is required: say who the token is for")
	case *publish == "" && *subscribe == "":
		return errors.New("token: give -publish, -subscribe or both: a token with neither may do nothing")
	case *ttl < 0:
		return fmt.Errorf("token: -ttl %s is negative", *ttl)
	}
	cfg, source, err := loadConfig(configPath, configGiven, getenv)
	if err != nil {
		return err
	}
	if cfg.Security.JWT.Secret == "" {
		return noSigningSecret(cfg, source, configPath)
	}
	secret, err := cfg.JWTSecret(source, getenv)
	if err != nil {
		return err
	}
	claims := access.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: *subject, IssuedAt: jwt.NewNumericDate(time.Now())},
		Herald:           access.TopicClaims{Publish: splitPatterns(*publish), Subscribe: splitPatterns(*subscribe)},
	}
	if *ttl > 0 {
		claims.ExpiresAt = jwt.NewNumericDate(time.Now().Add(*ttl))
	}
	if aud := cfg.Security.JWT.Audience; aud != "" {
		claims.Audience = jwt.ClaimStrings{aud}
	}
	claims.Issuer = cfg.Security.JWT.Issuer
	token, err := access.Mint(secret, claims)
	if err != nil {
		return source.Problem("security.jwt.secret", err)
	}
	fmt.Fprintln(stdout, token)
	return nil
}

// noSigningSecret says what to add where, for a config without
// security.jwt.secret: the line that reads the secret from the variable
// the README exports, in the file herald token read, or would have.
func noSigningSecret(cfg config.Config, source config.Source, path string) error {
	const (
		line      = "security.jwt.secret: env:HERALD_JWT_SECRET"
		placement = "(under security: and jwt:), and give the server the same HERALD_JWT_SECRET"
	)
	switch {
	case cfg.Security.JWT.PublicKeyFile != "":
		return fmt.Errorf("token: %s verifies JWTs with security.jwt.public_key_file, so tokens come from whoever holds its private key; herald token signs only with security.jwt.secret", source.Name)
	case source.Name == builtInDefaults:
		return fmt.Errorf("token: there is no %s, so no security.jwt.secret to sign with: create %s with the line %s %s", path, path, line, placement)
	}
	return fmt.Errorf("token: %s sets no security.jwt.secret to sign with: add the line %s to %s %s", source.Name, line, source.Name, placement)
}

// splitPatterns reads a comma-separated list; empty is none.
func splitPatterns(list string) []string {
	var patterns []string
	for _, p := range strings.Split(list, ",") {
		if p = strings.TrimSpace(p); p != "" {
			patterns = append(patterns, p)
		}
	}
	return patterns
}
