package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"

	"herald/app/access"
)

// Config is Herald's whole configuration. The server only ever sees a Config
// that came from DefaultConfig, optionally refined by ParseConfig or ApplyEnv,
// and passed Validate.
type Config struct {
	// Host is the listen address; empty listens on every interface.
	Host string `yaml:"host"`
	// Port is the TCP port; 0 asks the kernel for a free one.
	Port int `yaml:"port"`
	// ShutdownGrace bounds how long a stop may take before connections are cut.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`

	Paths     PathsConfig     `yaml:"paths"`
	Limits    LimitsConfig    `yaml:"limits"`
	WebSocket WebSocketConfig `yaml:"websocket"`
	SSE       SSEConfig       `yaml:"sse"`
	History   HistoryConfig   `yaml:"history"`
	Log       LogConfig       `yaml:"log"`
	Security  SecurityConfig  `yaml:"security"`
	Notify    NotifyConfig    `yaml:"notify"`
	TLS       TLSConfig       `yaml:"tls"`
	Debug     DebugConfig     `yaml:"debug"`
	// Broker is "memory" (one instance, nothing else needed) or "redis"
	// (several instances sharing topics through Redis).
	Broker string      `yaml:"broker"`
	Redis  RedisConfig `yaml:"redis"`
}

// RedisConfig says how to reach Redis when broker is redis.
type RedisConfig struct {
	// URL is redis://[:password@]host:port[/db], or rediss:// for TLS;
	// HERALD_REDIS_URL overrides it.
	URL string `yaml:"url"`
	// Prefix starts every key and channel Herald uses, so that several
	// deployments can share one Redis.
	Prefix string `yaml:"prefix"`
	// Timeout bounds connecting and every command.
	Timeout time.Duration `yaml:"timeout"`
}

// DebugConfig turns on what helps to profile a running server.
type DebugConfig struct {
	// Pprof serves Go's profiles (net/http/pprof) at paths.pprof, so that
	// users can profile Herald under their own load. Off by default: a
	// profile shows what the server is doing to whoever can reach it.
	Pprof bool `yaml:"pprof"`
}

// SecurityConfig says who may subscribe and publish.
type SecurityConfig struct {
	// AllowedOrigins are the browser origins, besides the server's own,
	// that may open WebSockets and publish, such as https://app.example.com.
	// Requests without an Origin header (curl, scripts, servers) are not
	// affected.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// AllowedHosts are the host names, besides loopback names and IP
	// addresses, that this server answers to, such as herald.example.com;
	// ".example.com" allows every subdomain too, and "*" any name. A request
	// for any other name is refused, which stops DNS rebinding.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// TrustedProxies are the addresses or CIDR ranges of reverse proxies
	// that may name the client they forward for, in X-Forwarded-For or
	// X-Real-IP. Empty trusts no one: the client is the TCP peer.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Anonymous is what clients without a token may do: auto, read-write,
	// read-only, write-only or deny. Auto lets them do an action until
	// some token or the JWT key can grant it.
	Anonymous string `yaml:"anonymous"`
	// Tokens are scoped tokens: each may read and write the topics its
	// patterns cover.
	Tokens []access.TokenConfig `yaml:"tokens"`
	// JWT, when it has a key, accepts JWTs that list their topics.
	JWT access.JWTConfig `yaml:"jwt"`
	// PublishToken, when set, may publish to every topic; shorthand for a
	// token with write: ["*"].
	PublishToken string `yaml:"publish_token"`
	// SubscribeToken, when set, may subscribe to every topic; shorthand
	// for a token with read: ["*"].
	SubscribeToken string `yaml:"subscribe_token"`
	// AdminToken, when set, is required for the operator's routes that
	// show what the server is doing: metrics and profiles.
	AdminToken string `yaml:"admin_token"`
}

// Access is the part of the security settings that decides who may read
// and write which topics.
func (c SecurityConfig) Access() access.Config {
	return access.Config{
		Anonymous: c.Anonymous, Tokens: c.Tokens, JWT: c.JWT,
		PublishToken: c.PublishToken, SubscribeToken: c.SubscribeToken,
	}
}

// NotifyConfig sets how the notify route publishes.
type NotifyConfig struct {
	// AllowGet lets GET /notify?msg= publish, as the article's clients do. Turn
	// it off where following a link must never publish.
	AllowGet bool `yaml:"allow_get"`
}

// TLSConfig serves https and wss directly when both files are set.
type TLSConfig struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// PathsConfig places each route. Every path starts with "/".
type PathsConfig struct {
	Page   string `yaml:"page"`
	WS     string `yaml:"ws"`
	Notify string `yaml:"notify"`
	Events string `yaml:"events"`
	Static string `yaml:"static"`
	// Healthz, Readyz and Metrics are for operators: liveness, readiness
	// and Prometheus metrics.
	Healthz string `yaml:"healthz"`
	Readyz  string `yaml:"readyz"`
	Metrics string `yaml:"metrics"`
	// Pprof is where Go's profiles are served when debug.pprof is on.
	Pprof string `yaml:"pprof"`
	// Access answers what the token a client presents may do.
	Access string `yaml:"access"`
}

// LimitsConfig bounds what any one client can make the server hold.
type LimitsConfig struct {
	// MaxMessageBytes is the largest message a publisher may send.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MaxFrameBytes is the largest frame a subscriber may send; such frames are
	// read and discarded, and a larger one closes that connection.
	MaxFrameBytes int `yaml:"max_frame_bytes"`
	// MaxLagBytes is how far, in bytes of messages, a subscriber may fall
	// behind its topic before it is disconnected as too slow. It bounds the
	// memory one stalled subscriber can hold; bytes, not a message count,
	// so that a busy server does not take its healthy subscribers, all a
	// few small messages behind, for slow ones.
	MaxLagBytes int `yaml:"max_lag_bytes"`
	// MaxTopics bounds the topics held at once, counting those with
	// subscribers or kept history, so that made-up topic names cannot grow
	// memory without end.
	MaxTopics int `yaml:"max_topics"`
	// MaxConnections bounds open subscriber connections (WebSocket and
	// SSE); one more gets 503 before any upgrade.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP bounds one client address's open subscriber
	// connections; one more gets 429.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// PublishPerSecond and PublishBurst rate-limit publishing per client
	// address: a bucket of PublishBurst refilled at PublishPerSecond. 0
	// turns the limit off.
	PublishPerSecond float64 `yaml:"publish_per_second"`
	PublishBurst     int     `yaml:"publish_burst"`
}

// WebSocketConfig sets the timing of every WebSocket connection.
type WebSocketConfig struct {
	// PingInterval is how often each connection is pinged, so that proxies
	// keep idle connections open and dead peers are noticed.
	PingInterval time.Duration `yaml:"ping_interval"`
	// PongTimeout is how long past a ping interval a silent peer is given
	// before it is considered dead.
	PongTimeout time.Duration `yaml:"pong_timeout"`
	// WriteTimeout bounds every single frame write.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IOURing sends each round of writes to many connections with one
	// system call (Linux io_uring) where the kernel allows it; false, or
	// where it does not, each connection gets a write(2) of its own.
	IOURing bool `yaml:"io_uring"`
}

// SSEConfig sets the timing of every Server-Sent Events stream. Writes share
// websocket.write_timeout.
type SSEConfig struct {
	// HeartbeatInterval is how often an idle stream gets a comment line, so
	// that proxies keep it open and dead peers are noticed.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
}

// LogConfig sets how Herald logs, always to stderr.
type LogConfig struct {
	// Format is "text" (key=value lines) or "json" (one object per line).
	Format string `yaml:"format"`
	// Level is the least severe level logged: debug, info, warn or error.
	Level string `yaml:"level"`
}

// SlogLevel is the slog level that Level names; ok is false for a name
// that is not a level.
func (c LogConfig) SlogLevel() (level slog.Level, ok bool) {
	switch c.Level {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return 0, false
}

// HistoryConfig sets what each topic keeps for subscribers that resume.
type HistoryConfig struct {
	// Size is how many recent messages each topic keeps; 0 keeps none.
	Size int `yaml:"size"`
	// TTL is how long a message is kept.
	TTL time.Duration `yaml:"ttl"`
	// File, when set, keeps history in this bbolt file so that it survives
	// restarts; a publish is acknowledged once it is on disk. Empty keeps
	// history in memory.
	File string `yaml:"file"`
	// CommitDelay is how long a publish that leads a commit to the history
	// file may wait for concurrent publishes, of any topic, to join it, and
	// only when the last commit was shared by several: it waits until as
	// many are pending, or CommitDelay has passed. 0 never waits.
	CommitDelay time.Duration `yaml:"commit_delay"`
}

// Limits on the limits: values outside these ranges are mistakes, not tuning.
const (
	maxMessageBytesCeiling = 16 << 20
	maxFrameBytesCeiling   = 1 << 20
	maxLagBytesCeiling     = 1 << 30
	historySizeCeiling     = 1 << 20
	maxTopicsCeiling       = 1 << 24
	maxConnectionsCeiling  = 1 << 24
)

// DefaultConfig returns the configuration Herald runs with when no file is
// given. The shipped config.yaml states exactly these values.
func DefaultConfig() Config {
	return Config{
		Host:          "",
		Port:          9000,
		ShutdownGrace: 10 * time.Second,
		Paths: PathsConfig{
			Page:    "/",
			WS:      "/ws",
			Notify:  "/notify",
			Events:  "/events",
			Static:  "/static",
			Healthz: "/healthz",
			Readyz:  "/readyz",
			Metrics: "/metrics",
			Pprof:   "/debug/pprof",
			Access:  "/access",
		},
		Limits: LimitsConfig{
			MaxMessageBytes: 64 << 10,
			MaxFrameBytes:   4 << 10,
			MaxLagBytes:     16 << 20,
			MaxTopics:       10000,
			// A public server: thousands of watchers, a busy page or script
			// per address, and publishing at a human or webhook pace.
			MaxConnections:      10000,
			MaxConnectionsPerIP: 100,
			PublishPerSecond:    10,
			PublishBurst:        50,
		},
		WebSocket: WebSocketConfig{
			PingInterval: 30 * time.Second,
			PongTimeout:  10 * time.Second,
			WriteTimeout: 10 * time.Second,
			IOURing:      true,
		},
		SSE: SSEConfig{
			HeartbeatInterval: 15 * time.Second,
		},
		History: HistoryConfig{
			Size:        1000,
			TTL:         24 * time.Hour,
			File:        "",
			CommitDelay: time.Millisecond,
		},
		Log: LogConfig{
			Format: "text",
			Level:  "info",
		},
		Security: SecurityConfig{
			AllowedOrigins: []string{},
			AllowedHosts:   []string{},
			TrustedProxies: []string{},
			Anonymous:      access.AnonymousAuto,
			Tokens:         []access.TokenConfig{},
		},
		Notify: NotifyConfig{
			AllowGet: true,
		},
		Broker: "memory",
		Redis: RedisConfig{
			URL:     "redis://127.0.0.1:6379/0",
			Prefix:  "herald:",
			Timeout: 5 * time.Second,
		},
	}
}

// ConfigError is a problem with one configuration key. Its message is one
// line that names the source, the line when known, and the key.
type ConfigError struct {
	Source  string // file name or environment variable
	Line    int    // 0 when unknown
	Key     string // dotted path, such as "paths.ws"
	Problem string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Problem)
	return b.String()
}

// ConfigSource says where a configuration came from: its file, and the
// line of every key the file set, so that a problem found after loading,
// such as a secret that cannot be read, still names its line.
type ConfigSource struct {
	// Name is the file, or whatever else the configuration came from.
	Name  string
	lines map[string]int
}

// Problem is err, found with the value of key, as a ConfigError at the
// key's line.
func (s ConfigSource) Problem(key string, err error) *ConfigError {
	return &ConfigError{Source: s.Name, Line: lineOf(s.lines, key), Key: key, Problem: err.Error()}
}

// LoadConfig reads the YAML file at path over the defaults and validates
// it. It does not read the secrets it refers to: CheckSecrets does.
func LoadConfig(path string) (Config, ConfigSource, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, ConfigSource{}, fmt.Errorf("read config: %w", err)
	}
	return parseConfig(path, data)
}

// ParseConfig decodes YAML over the defaults and validates the result. Keys
// that Herald does not know are errors, not silently ignored: a typo in a
// key would otherwise leave a default in force without anyone noticing.
func ParseConfig(source string, data []byte) (Config, error) {
	cfg, _, err := parseConfig(source, data)
	return cfg, err
}

func parseConfig(name string, data []byte) (Config, ConfigSource, error) {
	cfg := DefaultConfig()
	source := ConfigSource{Name: name, lines: map[string]int{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, problem := yamlProblem(data, err)
		return Config{}, ConfigSource{}, &ConfigError{Source: name, Line: line, Problem: problem}
	}
	if len(doc.Content) > 0 {
		d := decoder{source: name, lines: source.lines}
		if err := d.decodeStruct(doc.Content[0], reflect.ValueOf(&cfg).Elem(), ""); err != nil {
			return Config{}, ConfigSource{}, err
		}
	}
	if err := cfg.validate(name, source.lines); err != nil {
		return Config{}, ConfigSource{}, err
	}
	return cfg, source, nil
}

// CheckSecrets reads every secret c refers to, env:NAME with getenv and
// file:PATH from its file, and reports the first that cannot be used at
// its line in source. Loading leaves this to a separate step, since not
// every command needs every secret: herald token needs only the JWT key.
func (c Config) CheckSecrets(source ConfigSource, getenv func(string) string) error {
	accessConfig := c.Security.Access()
	accessConfig.Getenv = getenv
	if _, err := access.NewPolicy(accessConfig, nil); err != nil {
		var keyErr *access.KeyError
		if errors.As(err, &keyErr) {
			return source.Problem("security."+keyErr.Key, keyErr.Err)
		}
		return err
	}
	if c.Security.AdminToken != "" {
		if _, err := access.ReadSecret(c.Security.AdminToken, getenv); err != nil {
			return source.Problem("security.admin_token", err)
		}
	}
	return nil
}

// ApplyEnv applies environment overrides to cfg: HERALD_PORT sets the port,
// and HERALD_PUBLISH_TOKEN, HERALD_SUBSCRIBE_TOKEN and HERALD_ADMIN_TOKEN
// set the tokens, so
// secrets can stay out of the config file.
func ApplyEnv(cfg *Config, getenv func(string) string) error {
	for name, token := range map[string]*string{
		"HERALD_PUBLISH_TOKEN":   &cfg.Security.PublishToken,
		"HERALD_SUBSCRIBE_TOKEN": &cfg.Security.SubscribeToken,
		"HERALD_ADMIN_TOKEN":     &cfg.Security.AdminToken,
	} {
		if v := getenv(name); v != "" {
			if v != strings.TrimSpace(v) {
				return &ConfigError{Source: name, Problem: "has spaces at its start or end, which clients would not send"}
			}
			*token = v
		}
	}
	if v := getenv("HERALD_REDIS_URL"); v != "" {
		if _, err := redis.ParseURL(v); err != nil {
			return &ConfigError{Source: "HERALD_REDIS_URL", Problem: redisURLProblem(err)}
		}
		cfg.Redis.URL = v
	}
	if v := getenv("HERALD_PORT"); v != "" {
		port, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || !validPort(port) {
			return &ConfigError{Source: "HERALD_PORT", Problem: fmt.Sprintf("%q %s", v, notAPort)}
		}
		cfg.Port = port
	}
	return nil
}

// Validate reports the first problem with cfg, or nil.
func (c Config) Validate() error {
	return c.validate("config", nil)
}

func (c Config) validate(source string, lines map[string]int) error {
	fail := func(key, format string, args ...any) error {
		return &ConfigError{Source: source, Line: lineOf(lines, key), Key: key, Problem: fmt.Sprintf(format, args...)}
	}
	if !validPort(c.Port) {
		return fail("port", "%d %s", c.Port, notAPort)
	}
	if c.ShutdownGrace <= 0 {
		return fail("shutdown_grace", "must be longer than 0s")
	}

	routes := []struct{ key, path string }{
		{"paths.page", c.Paths.Page},
		{"paths.ws", c.Paths.WS},
		{"paths.notify", c.Paths.Notify},
		{"paths.events", c.Paths.Events},
		{"paths.healthz", c.Paths.Healthz},
		{"paths.readyz", c.Paths.Readyz},
		{"paths.metrics", c.Paths.Metrics},
		{"paths.pprof", c.Paths.Pprof},
		{"paths.access", c.Paths.Access},
		{"paths.static", c.Paths.Static},
	}
	for i, r := range routes {
		if problem := pathProblem(r.path); problem != "" {
			return fail(r.key, "%s (got %q)", problem, r.path)
		}
		for _, earlier := range routes[:i] {
			if r.path == earlier.path {
				return fail(r.key, "%q is already used by %s", r.path, earlier.key)
			}
		}
	}
	if c.Paths.Static == "/" {
		return fail("paths.static", `must not be "/": static files would hide every other route`)
	}
	for _, r := range routes[:len(routes)-1] {
		if strings.HasPrefix(r.path, c.Paths.Static+"/") {
			return fail(r.key, "%q is inside paths.static %q", r.path, c.Paths.Static)
		}
	}

	// Whole numbers with their ranges, and durations that must be positive,
	// checked in this order so that the first problem reported is stable.
	type wholeNumber struct {
		key       string
		value     int
		low, high int
	}
	numbers := []wholeNumber{
		{"limits.max_message_bytes", c.Limits.MaxMessageBytes, 1, maxMessageBytesCeiling},
		{"limits.max_frame_bytes", c.Limits.MaxFrameBytes, 1, maxFrameBytesCeiling},
		{"limits.max_lag_bytes", c.Limits.MaxLagBytes, 1, maxLagBytesCeiling},
		{"limits.max_connections", c.Limits.MaxConnections, 1, maxConnectionsCeiling},
		{"limits.max_connections_per_ip", c.Limits.MaxConnectionsPerIP, 1, maxConnectionsCeiling},
		{"limits.max_topics", c.Limits.MaxTopics, 1, maxTopicsCeiling},
		{"history.size", c.History.Size, 0, historySizeCeiling},
	}
	if c.Limits.PublishPerSecond > 0 { // the burst matters only while the rate limit is on
		numbers = append(numbers, wholeNumber{"limits.publish_burst", c.Limits.PublishBurst, 1, maxConnectionsCeiling})
	}
	for _, n := range numbers {
		if problem := inRange(n.value, n.low, n.high); problem != "" {
			return fail(n.key, "%s", problem)
		}
	}
	if c.Limits.MaxLagBytes < c.Limits.MaxMessageBytes {
		return fail("limits.max_lag_bytes", "%d is below limits.max_message_bytes (%d): one message would put every subscriber too far behind",
			c.Limits.MaxLagBytes, c.Limits.MaxMessageBytes)
	}
	if r := c.Limits.PublishPerSecond; r < 0 || r > 1e6 || r != r {
		return fail("limits.publish_per_second", "%v is outside 0-1000000 (0 turns the limit off)", r)
	}
	for _, d := range []struct {
		key   string
		value time.Duration
	}{
		{"websocket.ping_interval", c.WebSocket.PingInterval},
		{"websocket.pong_timeout", c.WebSocket.PongTimeout},
		{"websocket.write_timeout", c.WebSocket.WriteTimeout},
		{"sse.heartbeat_interval", c.SSE.HeartbeatInterval},
		{"history.ttl", c.History.TTL},
	} {
		if d.value <= 0 {
			return fail(d.key, "must be longer than 0s")
		}
	}

	if d := c.History.CommitDelay; d < 0 || d > time.Second {
		return fail("history.commit_delay", "%s is outside 0s-1s", d)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return fail("log.format", "%q is not a format: use text or json", c.Log.Format)
	}
	if _, ok := c.Log.SlogLevel(); !ok {
		return fail("log.level", "%q is not a level: use debug, info, warn or error", c.Log.Level)
	}
	for i, origin := range c.Security.AllowedOrigins {
		if problem := originProblem(origin); problem != "" {
			return fail(itemKey("security.allowed_origins", i), "%s (got %q)", problem, origin)
		}
	}
	for i, host := range c.Security.AllowedHosts {
		if problem := hostProblem(host); problem != "" {
			return fail(itemKey("security.allowed_hosts", i), "%s (got %q)", problem, host)
		}
	}
	for i, proxy := range c.Security.TrustedProxies {
		if _, err := ParseAddressRange(proxy); err != nil {
			return fail(itemKey("security.trusted_proxies", i), "%v", err)
		}
	}
	for _, token := range []struct{ key, value string }{
		{"security.publish_token", c.Security.PublishToken},
		{"security.subscribe_token", c.Security.SubscribeToken},
		{"security.admin_token", c.Security.AdminToken},
	} {
		if token.value != strings.TrimSpace(token.value) {
			return fail(token.key, "has spaces at its start or end, which clients would not send")
		}
	}
	for i, token := range c.Security.Tokens {
		for _, field := range []struct {
			name     string
			patterns []string
		}{{"read", token.Read}, {"write", token.Write}} {
			for j, pattern := range field.patterns {
				key := itemKey(fmt.Sprintf("%s.%s", itemKey("security.tokens", i), field.name), j)
				switch {
				case pattern == "":
					return fail(key, "is empty: a pattern is a topic name in which * stands for any run of characters")
				case CheckTopic(strings.ReplaceAll(pattern, "*", "x")) != nil:
					return fail(key, "%q is not a topic pattern: a topic name in which * stands for any run of characters", pattern)
				}
			}
		}
	}
	if key, err := c.Security.Access().Check(); err != nil {
		return fail("security."+key, "%v", err)
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return fail("tls.cert", "set both tls.cert and tls.key, or neither")
	}
	switch c.Broker {
	case "memory", "redis":
	default:
		return fail("broker", "%q is not a broker: use memory or redis", c.Broker)
	}
	if _, err := redis.ParseURL(c.Redis.URL); err != nil {
		return fail("redis.url", "%s", redisURLProblem(err))
	}
	if c.Redis.Timeout <= 0 {
		return fail("redis.timeout", "must be longer than 0s")
	}
	if c.Broker == "redis" && c.History.File != "" {
		return fail("history.file", "is for broker: memory; with broker: redis, Redis keeps the history (give Redis persistence, such as appendonly yes)")
	}
	return nil
}

// redisURLProblem words why a Redis URL was refused, without repeating
// the URL, which may hold a password.
func redisURLProblem(err error) string {
	var parseErr *url.Error
	if errors.As(err, &parseErr) {
		err = parseErr.Err // url.Error quotes the whole URL
	}
	return fmt.Sprintf("is not a Redis URL such as redis://:password@host:6379/0 or rediss://host:6380 (%v)", err)
}

// pathProblem explains what is wrong with a route path, or returns "".
// Echo gives ':' and '*' meaning in routes, so they are refused rather than
// letting a path quietly become a pattern.
func pathProblem(p string) string {
	switch {
	case p == "":
		return "must not be empty"
	case p[0] != '/':
		return `must start with "/"`
	case len(p) > 1 && strings.HasSuffix(p, "/"):
		return `must not end with "/"`
	case strings.Contains(p, "//"):
		return `must not contain "//"`
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "." || seg == ".." {
			return `must not contain "." or ".." segments`
		}
	}
	for _, r := range p {
		ok := r == '/' || r == '-' || r == '_' || r == '.' || r == '~' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok {
			return fmt.Sprintf("may hold only letters, digits and / - _ . ~, not %q", r)
		}
	}
	return ""
}

// originProblem explains what is wrong with an allowed origin, or returns
// "". An origin is what browsers send: scheme://host[:port], nothing more.
// "*" allows every origin.
func originProblem(origin string) string {
	if origin == "*" {
		return ""
	}
	u, err := url.Parse(origin)
	switch {
	case err != nil:
		return "is not a URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must start with http:// or https://"
	case u.Host == "":
		return "has no host"
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return "must be scheme://host[:port] only, as browsers send it, with no path"
	case strings.ToLower(origin) != origin:
		return "must be lower case, as browsers send it"
	}
	return ""
}

// ParseAddressRange reads an IP address, as the range of that one
// address, or a CIDR range such as 10.0.0.0/8.
func ParseAddressRange(s string) (*net.IPNet, error) {
	if _, network, err := net.ParseCIDR(s); err == nil {
		return network, nil
	}
	ip := net.ParseIP(s)
	if ip == nil {
		return nil, fmt.Errorf("%q is not an IP address or a CIDR range such as 10.0.0.0/8", s)
	}
	bits := 8 * net.IPv6len
	if ip4 := ip.To4(); ip4 != nil {
		ip, bits = ip4, 8*net.IPv4len
	}
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}, nil
}

// hostProblem explains what is wrong with an allowed host, or returns "".
// A host is a name as it appears in the Host header, without a port.
func hostProblem(host string) string {
	if host == "*" {
		return ""
	}
	name := strings.TrimPrefix(host, ".")
	switch {
	case name == "":
		return "is empty"
	case strings.Contains(host, "://"):
		return "must be a host name such as herald.example.com, without a scheme"
	case strings.ToLower(host) != host:
		return "must be lower case"
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return "is not a host name: each dot-separated part must be 1 to 63 characters"
		}
		for _, r := range label {
			if !(r == '-' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')) {
				return fmt.Sprintf("is not a host name: %q is not allowed (give the name without a port or path)", r)
			}
		}
	}
	return ""
}

// notAPort is how an out-of-range port is refused, from the file or the
// environment alike.
const notAPort = "is not a port number (0-65535)"

// validPort reports whether p can be listened on; 0 asks for a free port.
func validPort(p int) bool { return p >= 0 && p <= 65535 }

func inRange(v, lo, hi int) string {
	if v < lo || v > hi {
		return fmt.Sprintf("%d is outside %d-%d", v, lo, hi)
	}
	return ""
}

// decoder fills a struct from a YAML node, field by field, so that every
// error can name the dotted key and its line.
type decoder struct {
	source string
	lines  map[string]int // dotted key -> line, for validation messages
}

var durationType = reflect.TypeFor[time.Duration]()

func (d decoder) decodeStruct(node *yaml.Node, out reflect.Value, prefix string) error {
	if node.Kind == yaml.ScalarNode && node.Tag == "!!null" {
		return nil // an empty section keeps its defaults
	}
	if node.Kind != yaml.MappingNode {
		return &ConfigError{Source: d.source, Line: node.Line, Key: prefix, Problem: "want a section of keys"}
	}
	fields := yamlFields(out.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(node.Content); i += 2 {
		keyNode, valueNode := node.Content[i], node.Content[i+1]
		key := keyNode.Value
		if prefix != "" {
			key = prefix + "." + keyNode.Value
		}
		index, known := fields[keyNode.Value]
		if !known {
			problem := "unknown key"
			if replacement := retiredKey(key); replacement != "" {
				problem = "no longer used: " + replacement + "; remove this key"
			} else if near := nearestName(keyNode.Value, fields); near != "" {
				if prefix != "" {
					near = prefix + "." + near
				}
				problem += "; did you mean " + near + "?"
			}
			return &ConfigError{Source: d.source, Line: keyNode.Line, Key: key, Problem: problem}
		}
		if seen[key] {
			return &ConfigError{Source: d.source, Line: keyNode.Line, Key: key, Problem: "given twice"}
		}
		seen[key] = true
		d.lines[key] = keyNode.Line

		field := out.Field(index)
		if field.Kind() == reflect.Struct && field.Type() != durationType {
			if err := d.decodeStruct(valueNode, field, key); err != nil {
				return err
			}
			continue
		}
		if field.Kind() == reflect.Slice {
			if err := d.decodeList(valueNode, field, key); err != nil {
				return err
			}
			continue
		}
		if valueNode.Kind != yaml.ScalarNode {
			return &ConfigError{Source: d.source, Line: valueNode.Line, Key: key, Problem: "want " + kindName(field.Type())}
		}
		if err := valueNode.Decode(field.Addr().Interface()); err != nil {
			return &ConfigError{Source: d.source, Line: valueNode.Line, Key: key,
				Problem: fmt.Sprintf("want %s, got %q", kindName(field.Type()), valueNode.Value)}
		}
	}
	return nil
}

// decodeList fills a list of strings or of sections; an empty value is an
// empty list.
func (d decoder) decodeList(node *yaml.Node, out reflect.Value, key string) error {
	if node.Kind == yaml.ScalarNode && node.Tag == "!!null" {
		out.Set(reflect.MakeSlice(out.Type(), 0, 0))
		return nil
	}
	if node.Kind != yaml.SequenceNode {
		return &ConfigError{Source: d.source, Line: node.Line, Key: key, Problem: "want " + kindName(out.Type())}
	}
	list := reflect.MakeSlice(out.Type(), len(node.Content), len(node.Content))
	for i, item := range node.Content {
		itemKey := itemKey(key, i)
		d.lines[itemKey] = item.Line
		if out.Type().Elem().Kind() == reflect.Struct {
			if err := d.decodeStruct(item, list.Index(i), itemKey); err != nil {
				return err
			}
			continue
		}
		if item.Kind != yaml.ScalarNode || item.Decode(list.Index(i).Addr().Interface()) != nil {
			return &ConfigError{Source: d.source, Line: item.Line, Key: itemKey,
				Problem: "want " + kindName(out.Type().Elem())}
		}
	}
	out.Set(list)
	return nil
}

// itemKey names the item at index i of the list at key. Lists count from
// 0, as YAML tools (yq, JSON Pointer) do.
func itemKey(key string, i int) string { return fmt.Sprintf("%s[%d]", key, i) }

// lineOf is the line of key, or of the nearest section or list item
// around it when the key itself was not given.
func lineOf(lines map[string]int, key string) int {
	for key != "" {
		if line, ok := lines[key]; ok {
			return line
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

// nearestName is the name in names that key most likely misspells: the
// closest by edit distance, if it is within a third of its length (at
// least one edit), else "".
func nearestName(key string, names map[string]int) string {
	best, bestDistance := "", 0
	for name := range names {
		d := editDistance(strings.ToLower(key), name)
		if d > max(1, len(name)/3) {
			continue
		}
		if best == "" || d < bestDistance || (d == bestDistance && name < best) {
			best, bestDistance = name, d
		}
	}
	return best
}

// editDistance counts the insertions, deletions, substitutions and swaps
// of two neighbours that turn a into b (optimal string alignment), so
// that "prot" is one slip from "port".
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	// d[i][j] is the distance between ra[:i] and rb[:j].
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// retiredKey says what took the place of a key that earlier versions read,
// or returns "" for a key that never existed.
func retiredKey(key string) string {
	switch key {
	case "limits.subscriber_queue":
		return "a subscriber's lag is bounded in bytes by limits.max_lag_bytes"
	case "history.io_uring":
		return "the journal is written with write(2) and fdatasync(2), which were faster than io_uring"
	}
	return ""
}

// yamlFields maps each yaml tag of a struct type to its field index.
func yamlFields(t reflect.Type) map[string]int {
	fields := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			fields[name] = i
		}
	}
	return fields
}

func kindName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration such as 30s or 1m"
	case t.Kind() == reflect.Int:
		return "a whole number"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		return "a list of sections, each starting with \"- \""
	case t.Kind() == reflect.Slice:
		return "a list of " + strings.TrimPrefix(kindName(t.Elem()), "a ") + "s, such as [a, b]"
	}
	return t.String()
}

// yamlProblem turns a YAML syntax error into its line and one line of
// text without the library's prefix.
//
// yaml.v3 often names the line where the enclosing block began rather than
// the line with the problem (a tab on line 3 is reported on line 2). The
// line reported here is the first one at which the document, cut off after
// it, fails with the same problem: that is where the problem is.
func yamlProblem(data []byte, err error) (int, string) {
	text := yamlErrorText(err)
	line := 0
	lines := strings.SplitAfter(string(data), "\n")
	for n := 1; n <= len(lines); n++ {
		var doc yaml.Node
		prefixErr := yaml.Unmarshal([]byte(strings.Join(lines[:n], "")), &doc)
		if prefixErr != nil && yamlErrorText(prefixErr) == text {
			line = n
			break
		}
	}
	return line, "invalid YAML: " + text
}

// yamlLinePrefix matches the line yaml.v3 puts at the start of an error.
var yamlLinePrefix = regexp.MustCompile(`^line \d+: `)

// yamlErrorText is a YAML error's text without the library's prefix and
// line number.
func yamlErrorText(err error) string {
	msg := err.Error()
	var typeErr *yaml.TypeError
	if errors.As(err, &typeErr) && len(typeErr.Errors) > 0 {
		msg = typeErr.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	return yamlLinePrefix.ReplaceAllString(strings.ReplaceAll(msg, "\n", " "), "")
}
