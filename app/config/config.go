// Package config is Herald's configuration: every key with its default, decoding
// YAML with the file and line of every problem, environment overrides and
// validation. The server only ever sees a Config that passed Validate.
package config

import (
	"log/slog"
	"time"

	"herald/app/access"
	"herald/app/push"
)

// Config is Herald's whole configuration. The server only ever sees a Config
// that came from Default, optionally refined by Parse or ApplyEnv,
// and passed Validate.
type Config struct {
	// Host is the listen address; empty listens on every interface.
	Host string `yaml:"host"`
	// Port is the TCP port; 0 asks the kernel for a free one.
	Port int `yaml:"port"`
	// ShutdownGrace bounds how long a stop may take before connections are cut.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`

	Paths     Paths     `yaml:"paths"`
	Limits    Limits    `yaml:"limits"`
	WebSocket WebSocket `yaml:"websocket"`
	SSE       SSE       `yaml:"sse"`
	History   History   `yaml:"history"`
	Log       Log       `yaml:"log"`
	Security  Security  `yaml:"security"`
	Notify    Notify    `yaml:"notify"`
	Push      Push      `yaml:"push"`
	TLS       TLS       `yaml:"tls"`
	Debug     Debug     `yaml:"debug"`
	// Broker is "memory" (one instance, nothing else needed) or "redis"
	// (several instances sharing topics through Redis).
	Broker string `yaml:"broker"`
	Redis  Redis  `yaml:"redis"`
}

// HistoryKind is where the history is kept: "redis" with broker: redis,
// "file" with history.file, and otherwise "memory".
func (c Config) HistoryKind() string {
	switch {
	case c.Broker == "redis":
		return "redis"
	case c.History.File != "":
		return "file"
	}
	return "memory"
}

// Redis says how to reach Redis when broker is redis: one node (URL),
// Sentinels that name the master (Addrs with MasterName), or the nodes of
// a Redis Cluster (Addrs alone), as go-redis's UniversalOptions read them.
type Redis struct {
	// URL is redis://[:password@]host:port[/db], or rediss:// for TLS;
	// HERALD_REDIS_URL overrides it. It is for one Redis: with Addrs, it
	// stays at its default.
	URL string `yaml:"url"`
	// Addrs are host:port addresses: Sentinels when MasterName is set, else
	// nodes of a Redis Cluster, from which the others are found.
	Addrs []string `yaml:"addrs"`
	// MasterName is the master that the Sentinels in Addrs watch.
	MasterName string `yaml:"master_name"`
	// Username and Password authenticate with the data nodes (not the
	// Sentinels); the password may be env:NAME or file:PATH.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// SentinelUsername and SentinelPassword authenticate with the
	// Sentinels; the password may be env:NAME or file:PATH.
	SentinelUsername string `yaml:"sentinel_username"`
	SentinelPassword string `yaml:"sentinel_password"`
	// TLS speaks TLS to every node in Addrs; with URL, rediss:// does.
	TLS bool `yaml:"tls"`
	// TLSCAFile is a PEM file of the certificate authorities that sign
	// Redis's certificates, when the system's do not.
	TLSCAFile string `yaml:"tls_ca_file"`
	// MinReplicas is, with MasterName, how many replicas must hold a
	// publish before it is acknowledged, so that a failover cannot lose
	// it. 0 acknowledges it once the master has it.
	MinReplicas int `yaml:"min_replicas"`
	// Prefix starts every key and channel Herald uses, so that several
	// deployments can share one Redis.
	Prefix string `yaml:"prefix"`
	// Timeout bounds connecting and every command.
	Timeout time.Duration `yaml:"timeout"`
}

// Debug turns on what helps to profile a running server.
type Debug struct {
	// Pprof serves Go's profiles (net/http/pprof) at paths.pprof, so that
	// users can profile Herald under their own load. Off by default: a
	// profile shows what the server is doing to whoever can reach it.
	Pprof bool `yaml:"pprof"`
}

// Security says who may subscribe and publish.
type Security struct {
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
func (c Security) Access() access.Config {
	return access.Config{
		Anonymous: c.Anonymous, Tokens: c.Tokens, JWT: c.JWT,
		PublishToken: c.PublishToken, SubscribeToken: c.SubscribeToken,
	}
}

// Notify sets how the notify route publishes.
type Notify struct {
	// AllowGet lets GET /notify?msg= publish, as the article's clients do. Turn
	// it off where following a link must never publish.
	AllowGet bool `yaml:"allow_get"`
}

// Push sets Web Push: browsers register for a topic, and each message
// published to it reaches them through their push services, with the
// page closed.
type Push struct {
	// Enabled turns the push routes and pushing on.
	Enabled bool `yaml:"enabled"`
	// Subject is the contact, mailto: or https:, that push services see
	// in every push's VAPID claim; required when enabled.
	Subject string `yaml:"subject"`
	// Endpoints are the push services Herald may post to, as URL
	// prefixes; "*." may start a host, for any one label. A subscription
	// at any other endpoint is refused, so that nobody can make Herald
	// post to an internal address.
	Endpoints []string `yaml:"endpoints"`
	// KeyFile keeps the VAPID key pair when neither the history file nor
	// Redis does; created if missing. Empty makes a new pair at every
	// start, which breaks every browser's subscription.
	KeyFile string `yaml:"key_file"`
	// Queue bounds the messages waiting to be pushed; one more is
	// dropped, counted and logged.
	Queue int `yaml:"queue"`
	// Workers is how many messages are pushed at once.
	Workers int `yaml:"workers"`
	// Timeout bounds each request to a push service.
	Timeout time.Duration `yaml:"timeout"`
	// TTL is how long a push service keeps a push for a browser that is
	// offline.
	TTL time.Duration `yaml:"ttl"`
}

// TLS serves https and wss directly when both files are set.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Paths places each route. Every path starts with "/".
type Paths struct {
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
	// Push takes browsers' push subscriptions, and Push + "/key" gives
	// the VAPID public key.
	Push string `yaml:"push"`
}

// Limits bounds what any one client can make the server hold.
type Limits struct {
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
	// MaxPushSubscriptionsPerTopic and MaxPushSubscriptions bound the
	// browsers registered for push, per topic and in all.
	MaxPushSubscriptionsPerTopic int `yaml:"max_push_subscriptions_per_topic"`
	MaxPushSubscriptions         int `yaml:"max_push_subscriptions"`
}

// WebSocket sets the timing of every WebSocket connection.
type WebSocket struct {
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

// SSE sets the timing of every Server-Sent Events stream. Writes share
// websocket.write_timeout.
type SSE struct {
	// HeartbeatInterval is how often an idle stream gets a comment line, so
	// that proxies keep it open and dead peers are noticed.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
}

// Log sets how Herald logs, always to stderr.
type Log struct {
	// Format is "text" (key=value lines) or "json" (one object per line).
	Format string `yaml:"format"`
	// Level is the least severe level logged: debug, info, warn or error.
	Level string `yaml:"level"`
}

// SlogLevel is the slog level that Level names; ok is false for a name
// that is not a level.
func (c Log) SlogLevel() (level slog.Level, ok bool) {
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

// History sets what each topic keeps for subscribers that resume.
type History struct {
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
	pushQueueCeiling       = 1 << 20
	pushWorkersCeiling     = 256
	// pushTTLCeiling is the longest push services keep a push.
	pushTTLCeiling     = 28 * 24 * time.Hour
	maxReplicasCeiling = 100
)

// DefaultRedisURL is redis.url's default. With redis.addrs, redis.url
// stays at it: any other value sets both.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// Default returns the configuration Herald runs with when no file is
// given. The shipped config.yaml states exactly these values.
func Default() Config {
	return Config{
		Host:          "",
		Port:          9000,
		ShutdownGrace: 10 * time.Second,
		Paths: Paths{
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
			Push:    "/push",
		},
		Limits: Limits{
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
			// Browsers register when a person asks: a topic has its
			// readers, not a flood.
			MaxPushSubscriptionsPerTopic: 1000,
			MaxPushSubscriptions:         10000,
		},
		WebSocket: WebSocket{
			PingInterval: 30 * time.Second,
			PongTimeout:  10 * time.Second,
			WriteTimeout: 10 * time.Second,
			IOURing:      true,
		},
		SSE: SSE{
			HeartbeatInterval: 15 * time.Second,
		},
		History: History{
			Size:        1000,
			TTL:         24 * time.Hour,
			File:        "",
			CommitDelay: time.Millisecond,
		},
		Log: Log{
			Format: "text",
			Level:  "info",
		},
		Security: Security{
			AllowedOrigins: []string{},
			AllowedHosts:   []string{},
			TrustedProxies: []string{},
			Anonymous:      access.AnonymousAuto,
			Tokens:         []access.TokenConfig{},
		},
		Notify: Notify{
			AllowGet: true,
		},
		Push: Push{
			Enabled:   false,
			Subject:   "",
			Endpoints: push.DefaultEndpoints(),
			KeyFile:   "",
			Queue:     1000,
			Workers:   4,
			Timeout:   10 * time.Second,
			TTL:       24 * time.Hour,
		},
		Broker: "memory",
		Redis: Redis{
			URL:         DefaultRedisURL,
			Addrs:       []string{},
			MinReplicas: 1,
			Prefix:      "herald:",
			Timeout:     5 * time.Second,
		},
	}
}
