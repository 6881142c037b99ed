package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"herald/app"
	"herald/app/access"
	"herald/app/push"
)

// Validate reports the first problem with cfg, or nil.
func (c Config) Validate() error {
	return c.validate("config", nil, nil)
}

// validate reports the first problem with c, at its line in source. The
// files that secrets are kept in are read through files.
func (c Config) validate(source string, lines map[string]int, files *access.SecretFiles) error {
	fail := func(key, format string, args ...any) error {
		return &Error{Source: source, Line: lineOf(lines, key), Key: key, Problem: fmt.Sprintf(format, args...)}
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
		{"paths.push", c.Paths.Push},
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
	for _, r := range routes {
		if r.path == c.Paths.Push+"/key" {
			return fail(r.key, "%q is where paths.push gives the push key (paths.push + /key)", r.path)
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
		{"limits.max_push_subscriptions_per_topic", c.Limits.MaxPushSubscriptionsPerTopic, 1, maxConnectionsCeiling},
		{"limits.max_push_subscriptions", c.Limits.MaxPushSubscriptions, 1, maxConnectionsCeiling},
		{"push.queue", c.Push.Queue, 1, pushQueueCeiling},
		{"push.workers", c.Push.Workers, 1, pushWorkersCeiling},
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
		{"push.timeout", c.Push.Timeout},
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
				case app.CheckTopic(strings.ReplaceAll(pattern, "*", "x")) != nil:
					return fail(key, "%q is not a topic pattern: a topic name in which * stands for any run of characters", pattern)
				}
			}
		}
	}
	accessConfig := c.Security.Access()
	accessConfig.Files = files
	if key, err := accessConfig.Check(); err != nil {
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
	if err := c.Redis.validate(fail); err != nil {
		return err
	}
	if c.Broker == "redis" && c.History.File != "" {
		return fail("history.file", "is for broker: memory; with broker: redis, Redis keeps the history (give Redis persistence, such as appendonly yes)")
	}
	return c.validatePush(fail)
}

// validatePush checks the push section, whether push is on or not, so that
// turning it on later finds no surprise.
func (c Config) validatePush(fail func(key, format string, args ...any) error) error {
	switch {
	case c.Push.Enabled && c.Push.Subject == "":
		return fail("push.subject", "is required with push.enabled: the mailto: or https: contact push services see, such as mailto:ops@example.com")
	case c.Push.Subject != "":
		if problem := push.CheckSubject(c.Push.Subject); problem != "" {
			return fail("push.subject", "%q %s", c.Push.Subject, problem)
		}
	}
	if c.Push.Enabled && len(c.Push.Endpoints) == 0 {
		return fail("push.endpoints", "is empty: Herald could push to no browser's push service")
	}
	for i, prefix := range c.Push.Endpoints {
		if problem := push.CheckEndpointPrefix(prefix); problem != "" {
			return fail(itemKey("push.endpoints", i), "%q %s", prefix, problem)
		}
	}
	if c.Push.KeyFile != "" {
		switch {
		case c.Broker == "redis":
			return fail("push.key_file", "is for broker: memory without history.file; with broker: redis, Redis keeps the push key pair")
		case c.History.File != "":
			return fail("push.key_file", "is for broker: memory without history.file; with history.file, the history file keeps the push key pair")
		}
	}
	if d := c.Push.TTL; d < 0 || d > pushTTLCeiling {
		return fail("push.ttl", "%s is outside 0s-%s, the longest push services keep a push", formatDuration(d), formatDuration(pushTTLCeiling))
	}
	return nil
}

// bothRedisURLAndAddrs is how a config that names one Redis and several
// is refused, from the file or the environment.
const bothRedisURLAndAddrs = "set redis.url for one Redis, or redis.addrs for Sentinel or a Cluster, not both"

// validate reports the first problem with how r reaches Redis, through
// fail.
func (r Redis) validate(fail func(key, format string, args ...any) error) error {
	u, err := redis.ParseURL(r.URL)
	if err != nil {
		return fail("redis.url", "%s", redisURLProblem(err))
	}
	if len(r.Addrs) > 0 && r.URL != DefaultRedisURL {
		return fail("redis.url", bothRedisURLAndAddrs)
	}
	for i, addr := range r.Addrs {
		host, port, err := net.SplitHostPort(addr)
		if n, errPort := strconv.Atoi(port); err != nil || host == "" || errPort != nil || n < 1 || n > 65535 {
			return fail(itemKey("redis.addrs", i), "%q is not host:port, such as 10.0.0.5:26379", addr)
		}
	}
	if r.MasterName != "" && len(r.Addrs) == 0 {
		return fail("redis.master_name", "list the Sentinels in redis.addrs")
	}
	if r.MasterName == "" {
		for _, key := range []struct{ name, value string }{
			{"redis.sentinel_username", r.SentinelUsername}, {"redis.sentinel_password", r.SentinelPassword},
		} {
			if key.value != "" {
				return fail(key.name, "is for Sentinel: set redis.master_name")
			}
		}
	}
	if u.Password != "" && r.Password != "" && len(r.Addrs) == 0 {
		return fail("redis.password", "redis.url holds a password too: give it in one place")
	}
	if u.Username != "" && r.Username != "" && len(r.Addrs) == 0 {
		return fail("redis.username", "redis.url holds a user name too: give it in one place")
	}
	if r.TLS && len(r.Addrs) == 0 {
		return fail("redis.tls", "is for redis.addrs; with redis.url, TLS is a rediss:// URL")
	}
	if r.TLSCAFile != "" && !r.TLS && (len(r.Addrs) > 0 || u.TLSConfig == nil) {
		return fail("redis.tls_ca_file", "TLS is off: set redis.tls: true with redis.addrs, or use a rediss:// URL")
	}
	if problem := inRange(r.MinReplicas, 0, maxReplicasCeiling); problem != "" {
		return fail("redis.min_replicas", "%s", problem)
	}
	if strings.ContainsAny(r.Prefix, "{}") {
		return fail("redis.prefix", "must not hold { or }: Herald puts each topic's name in braces, so that Redis Cluster keeps a topic's keys together")
	}
	if r.Timeout <= 0 {
		return fail("redis.timeout", "must be longer than 0s")
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
