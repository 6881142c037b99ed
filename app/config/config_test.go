package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"herald/app/access"
)

func TestParseConfigAppliesValuesOverDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Parse("test.yaml", []byte(`
port: 8080
paths:
  ws: /live
websocket:
  ping_interval: 1m
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Port = 8080
	want.Paths.WS = "/live"
	want.WebSocket.PingInterval = time.Minute
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v\nwant %+v", cfg, want)
	}
}

func TestParseConfigEmptyFileMeansDefaults(t *testing.T) {
	t.Parallel()
	for _, given := range []string{"", "# only a comment\n", "paths:\n"} {
		cfg, err := Parse("test.yaml", []byte(given))
		if err != nil || !reflect.DeepEqual(cfg, Default()) {
			t.Errorf("Parse(%q) = %+v, %v; want the defaults", given, cfg, err)
		}
	}
}

func TestParseConfigRejectsBadInputWithOneLineNamingTheKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		givenYAML   string
		expectError string
	}{
		{"whenUnknownKey", "port: 9000\nprot: 1\n", "test.yaml:2: prot: unknown key"},
		{"whenUnknownNestedKey", "paths:\n  wss: /x\n", "test.yaml:2: paths.wss: unknown key"},
		{"whenPortNotANumber", "port: abc\n", `test.yaml:1: port: want a whole number, got "abc"`},
		{"whenPortOutOfRange", "port: 70000\n", "test.yaml:1: port: 70000 is not a port number (0-65535)"},
		{"whenNegativePort", "port: -1\n", "test.yaml:1: port: -1 is not a port number"},
		{"whenPathWithoutSlash", "paths:\n  ws: ws\n", `test.yaml:2: paths.ws: must start with "/" (got "ws")`},
		{"whenPathEndsWithSlash", "paths:\n  notify: /notify/\n", `paths.notify: must not end with "/"`},
		{"whenPathHasRoutePattern", "paths:\n  ws: /ws/:id\n", `paths.ws: may hold only letters, digits and / - _ . ~, not ':'`},
		{"whenPathEmpty", "paths:\n  page: \"\"\n", "paths.page: must not be empty"},
		{"whenTwoRoutesShareAPath", "paths:\n  notify: /ws\n", `test.yaml:2: paths.notify: "/ws" is already used by paths.ws`},
		{"whenRouteInsideStatic", "paths:\n  ws: /static/ws\n", `paths.ws: "/static/ws" is inside paths.static "/static"`},
		{"whenStaticAtRoot", "paths:\n  page: /home\n  static: /\n", `paths.static: must not be "/"`},
		{"whenPushSharesAPath", "paths:\n  push: /notify\n", `test.yaml:2: paths.push: "/notify" is already used by paths.notify`},
		{"whenPushInsideStatic", "paths:\n  push: /static/push\n", `paths.push: "/static/push" is inside paths.static "/static"`},
		{"whenBadDuration", "websocket:\n  ping_interval: often\n", `test.yaml:2: websocket.ping_interval: want a duration such as 30s or 1m, got "often"`},
		{"whenZeroDuration", "websocket:\n  write_timeout: 0s\n", "websocket.write_timeout: must be longer than 0s"},
		{"whenZeroLag", "limits:\n  max_lag_bytes: 0\n", "test.yaml:2: limits.max_lag_bytes: 0 is outside 1-1073741824"},
		{"whenLagBelowOneMessage", "limits:\n  max_lag_bytes: 1000\n  max_message_bytes: 2000\n", "test.yaml:2: limits.max_lag_bytes: 1000 is below limits.max_message_bytes (2000)"},
		{"whenRetiredQueueKey", "limits:\n  subscriber_queue: 8\n", "test.yaml:2: limits.subscriber_queue: no longer used: a subscriber's lag is bounded in bytes by limits.max_lag_bytes; remove this key"},
		{"whenRetiredJournalRingKey", "history:\n  io_uring: false\n", "test.yaml:2: history.io_uring: no longer used: the journal is written with write(2) and fdatasync(2), which were faster than io_uring; remove this key"},
		{"whenHugeMessages", "limits:\n  max_message_bytes: 1000000000\n", "limits.max_message_bytes: 1000000000 is outside"},
		{"whenKeyGivenTwice", "port: 1\nport: 2\n", "port: given twice"},
		{"whenEventsSharesThePage", "paths:\n  events: /\n", `test.yaml:2: paths.events: "/" is already used by paths.page`},
		{"whenNegativeHistory", "history:\n  size: -1\n", "test.yaml:2: history.size: -1 is outside 0-1048576"},
		{"whenZeroTTL", "history:\n  ttl: 0s\n", "history.ttl: must be longer than 0s"},
		{"whenHistoryFileNotAString", "history:\n  file: [a]\n", "history.file: want"},
		{"whenNoTopicsAllowed", "limits:\n  max_topics: 0\n", "limits.max_topics: 0 is outside 1-16777216"},
		{"whenZeroHeartbeat", "sse:\n  heartbeat_interval: 0s\n", "sse.heartbeat_interval: must be longer than 0s"},
		{"whenSectionIsAScalar", "paths: /ws\n", "test.yaml:1: paths: want a section of keys"},
		{"whenValueIsAList", "port: [1, 2]\n", "port: want a whole number"},
		{"whenNotYAML", "port: 1\n  bad: [\n", "test.yaml:2: invalid YAML"},
		{"whenTabIndentsLine3", "port: 1\nhost: x\n\tbad: 1\n", "test.yaml:3: invalid YAML: found a tab character"},
		{"whenListItemOnLine3", "port: 1\nhost: x\n- item\n", "test.yaml:3: invalid YAML: did not find expected key"},
		{"whenTokensIsNotAList", "security:\n  tokens: ci\n", `test.yaml:2: security.tokens: want a list of sections, each starting with "- "`},
		{"whenTokenHasUnknownKey", "security:\n  tokens:\n    - name: ci\n      secret: s\n      writes: [a]\n", "test.yaml:5: security.tokens[0].writes: unknown key"},
		{"whenSecondTokenHasNoSecret", "security:\n  tokens:\n    - {name: a, secret: s}\n    - name: b\n", "test.yaml:4: security.tokens[1].secret: the secret is empty"},
		{"whenTokenPatternIsNoTopic", "security:\n  tokens:\n    - name: a\n      secret: s\n      read: [\"team/*\"]\n", `test.yaml:5: security.tokens[0].read[0]: "team/*" is not a topic pattern`},
		{"whenAnonymousUnknown", "security:\n  anonymous: everyone\n", `test.yaml:2: security.anonymous: "everyone" is not known: use auto, read-write, read-only, write-only or deny`},
		{"whenJWTSecretShort", "security:\n  jwt:\n    secret: abc\n", "test.yaml:3: security.jwt.secret: the HMAC secret is 3 bytes; use at least 32"},
		{"whenBrokerUnknown", "broker: kafka\n", `test.yaml:1: broker: "kafka" is not a broker: use memory or redis`},
		{"whenRedisURLIsNotOne", "redis:\n  url: http://:hunter2@example.com\n", "test.yaml:2: redis.url: is not a Redis URL such as redis://:password@host:6379/0"},
		{"whenRedisTimeoutZero", "redis:\n  timeout: 0s\n", "test.yaml:2: redis.timeout: must be longer than 0s"},
		{"whenRedisWithAHistoryFile", "broker: redis\nhistory:\n  file: h.db\n", "test.yaml:3: history.file: is for broker: memory"},
		{"whenRedisURLAndAddrs", "redis:\n  addrs: [10.0.0.1:26379]\n  url: redis://10.0.0.9:6379/0\n", "test.yaml:3: redis.url: set redis.url for one Redis, or redis.addrs for Sentinel or a Cluster, not both"},
		{"whenRedisAddrHasNoPort", "redis:\n  addrs:\n    - 10.0.0.1:7000\n    - 10.0.0.2\n", `test.yaml:4: redis.addrs[1]: "10.0.0.2" is not host:port, such as 10.0.0.5:26379`},
		{"whenRedisAddrPortIsNoPort", "redis:\n  addrs: [\"10.0.0.1:70000\"]\n", `test.yaml:2: redis.addrs[0]: "10.0.0.1:70000" is not host:port`},
		{"whenMasterNameWithoutSentinels", "redis:\n  master_name: mymaster\n", "test.yaml:2: redis.master_name: list the Sentinels in redis.addrs"},
		{"whenSentinelPasswordWithoutSentinel", "redis:\n  addrs: [a:1, b:2]\n  sentinel_password: pw\n", "test.yaml:3: redis.sentinel_password: is for Sentinel: set redis.master_name"},
		{"whenSentinelUsernameWithoutSentinel", "redis:\n  sentinel_username: u\n", "test.yaml:2: redis.sentinel_username: is for Sentinel: set redis.master_name"},
		{"whenRedisPasswordTwice", "redis:\n  url: redis://:pw@10.0.0.9:6379/0\n  password: env:REDIS_PASSWORD\n", "test.yaml:3: redis.password: redis.url holds a password too: give it in one place"},
		{"whenRedisUsernameTwice", "redis:\n  url: redis://app:pw@10.0.0.9:6379/0\n  username: app\n", "test.yaml:3: redis.username: redis.url holds a user name too: give it in one place"},
		{"whenRedisTLSWithAURL", "redis:\n  tls: true\n", "test.yaml:2: redis.tls: is for redis.addrs; with redis.url, TLS is a rediss:// URL"},
		{"whenRedisCAWithoutTLS", "redis:\n  tls_ca_file: ca.pem\n", "test.yaml:2: redis.tls_ca_file: TLS is off: set redis.tls: true with redis.addrs, or use a rediss:// URL"},
		{"whenMinReplicasNegative", "redis:\n  min_replicas: -1\n", "test.yaml:2: redis.min_replicas: -1 is outside 0-100"},
		{"whenRedisPrefixHasABrace", "redis:\n  prefix: \"app{1}:\"\n", "test.yaml:2: redis.prefix: must not hold { or }: Herald puts each topic's name in braces, so that Redis Cluster keeps a topic's keys together"},
		// Every list counts from 0, as YAML tools (yq, JSON Pointer) do.
		{"whenSecondOriginIsNoOrigin", "security:\n  allowed_origins:\n    - https://a.example\n    - a.example\n", `test.yaml:4: security.allowed_origins[1]: must start with http:// or https:// (got "a.example")`},
		{"whenFirstHostIsNoHost", "security:\n  allowed_hosts: [\"Herald.example\"]\n", `test.yaml:2: security.allowed_hosts[0]: must be lower case`},
		{"whenSecondProxyIsNoAddress", "security:\n  trusted_proxies:\n    - 10.0.0.1\n    - proxy\n", `test.yaml:4: security.trusted_proxies[1]: "proxy" is not an IP address`},
		{"whenListItemIsASection", "security:\n  allowed_hosts:\n    - a.example\n    - {name: b}\n", "test.yaml:4: security.allowed_hosts[1]: want a string"},
		{"whenSecondPatternIsEmpty", "security:\n  tokens:\n    - name: a\n      secret: s\n      write: [a, \"\"]\n", "test.yaml:5: security.tokens[0].write[1]: is empty"},
		{"whenPushHasNoSubject", "push:\n  enabled: true\n", "test.yaml:1: push.subject: is required with push.enabled"},
		{"whenPushSubjectIsNoContact", "push:\n  subject: ops@example.com\n", `test.yaml:2: push.subject: "ops@example.com" must be a mailto: address or an https: URL`},
		{"whenPushMailtoHasNoAddress", "push:\n  subject: \"mailto:ops\"\n", `test.yaml:2: push.subject: "mailto:ops" must be mailto: and an e-mail address`},
		{"whenPushEndpointIsHTTPElsewhere", "push:\n  endpoints:\n    - https://fcm.googleapis.com/\n    - http://push.internal/\n", `test.yaml:4: push.endpoints[1]: "http://push.internal/" must be https: http is only for a push service on this machine`},
		{"whenPushEndpointHasNoSlash", "push:\n  endpoints: [\"https://fcm.googleapis.com\"]\n", `test.yaml:2: push.endpoints[0]: "https://fcm.googleapis.com" must end with "/"`},
		{"whenPushEndpointsAreNoneWhenOn", "push:\n  enabled: true\n  subject: mailto:ops@example.com\n  endpoints: []\n", "test.yaml:4: push.endpoints: is empty"},
		{"whenPushKeyFileWithHistoryFile", "history:\n  file: h.db\npush:\n  key_file: vapid.json\n", "test.yaml:4: push.key_file: is for broker: memory without history.file"},
		{"whenPushKeyFileWithRedis", "broker: redis\npush:\n  key_file: vapid.json\n", "test.yaml:3: push.key_file: is for broker: memory without history.file; with broker: redis, Redis keeps"},
		{"whenPushQueueIsZero", "push:\n  queue: 0\n", "test.yaml:2: push.queue: 0 is outside 1-1048576"},
		{"whenPushWorkersTooMany", "push:\n  workers: 1000\n", "test.yaml:2: push.workers: 1000 is outside 1-256"},
		{"whenPushTTLTooLong", "push:\n  ttl: 1000h\n", "test.yaml:2: push.ttl: 1000h is outside 0s-672h"},
		{"whenPushTimeoutZero", "push:\n  timeout: 0s\n", "test.yaml:2: push.timeout: must be longer than 0s"},
		{"whenNoPushSubscriptionsAllowed", "limits:\n  max_push_subscriptions: 0\n", "test.yaml:2: limits.max_push_subscriptions: 0 is outside 1-16777216"},
		{"whenARouteTakesThePushKey", "paths:\n  access: /push/key\n", `test.yaml:2: paths.access: "/push/key" is where paths.push gives the push key`},
		{"whenFlowListSpansLinesBeforeTheProblem", "paths: {ws: /a,\n  page: /b}\nport: : 1\n", "test.yaml:3: invalid YAML: mapping values are not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("test.yaml", []byte(tc.givenYAML))
			if err == nil {
				t.Fatalf("expected an error containing %q", tc.expectError)
			}
			if !strings.Contains(err.Error(), tc.expectError) {
				t.Errorf("error %q does not contain %q", err, tc.expectError)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

// oneVariable is an environment that holds only name, set to value.
func oneVariable(name string) func(value string) func(string) string {
	return func(value string) func(string) string {
		return func(key string) string {
			if key == name {
				return value
			}
			return ""
		}
	}
}

func TestApplyEnvOverridesPort(t *testing.T) {
	t.Parallel()
	env := oneVariable("HERALD_PORT")
	cfg := Default()
	if err := ApplyEnv(&cfg, env("8123")); err != nil || cfg.Port != 8123 {
		t.Fatalf("HERALD_PORT=8123 gave port %d, %v", cfg.Port, err)
	}
	for _, bad := range []string{"http", "-5", "65536"} {
		cfg := Default()
		err := ApplyEnv(&cfg, env(bad))
		var configErr *Error
		if !errors.As(err, &configErr) || configErr.Source != "HERALD_PORT" {
			t.Errorf("HERALD_PORT=%q: got %v, want a Error naming HERALD_PORT", bad, err)
		}
	}
	cfg = Default()
	if err := ApplyEnv(&cfg, env("")); err != nil || cfg.Port != Default().Port {
		t.Errorf("unset HERALD_PORT changed the port to %d (%v)", cfg.Port, err)
	}
}

func TestRedisURLFromTheEnvironmentAndNeverPrinted(t *testing.T) {
	t.Parallel()
	env := oneVariable("HERALD_REDIS_URL")
	cfg := Default()
	if err := ApplyEnv(&cfg, env("rediss://:s3cret@redis.internal:6380/2")); err != nil || cfg.Redis.URL != "rediss://:s3cret@redis.internal:6380/2" {
		t.Fatalf("HERALD_REDIS_URL gave %q, %v", cfg.Redis.URL, err)
	}
	if text := cfg.Redacted().YAML(); strings.Contains(text, "s3cret") || !strings.Contains(text, "redis.internal:6380/2") {
		t.Errorf("the printed config shows the password, or not the address:\n%s", text)
	}
	err := ApplyEnv(&cfg, env("redis://:pw@host:notaport"))
	if err == nil || strings.Contains(err.Error(), "pw@") || !strings.HasPrefix(err.Error(), "HERALD_REDIS_URL: ") {
		t.Errorf("a bad HERALD_REDIS_URL gave %v", err)
	}
}

// TestRedisSentinelAndClusterConfigs: redis.addrs with redis.master_name
// names Sentinels, without it Cluster nodes; their passwords may come from
// the environment or a file, are checked with the other secrets, and are
// never printed.
func TestRedisSentinelAndClusterConfigs(t *testing.T) {
	t.Parallel()
	sentinel, err := Parse("test.yaml", []byte(`broker: redis
redis:
  addrs: [10.0.0.1:26379, "[fd00::2]:26379"]
  master_name: mymaster
  username: herald
  password: env:REDIS_PASSWORD
  sentinel_password: s3ntinel
  tls: true
  tls_ca_file: /etc/herald/redis-ca.pem
  min_replicas: 2
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Broker = "redis"
	want.Redis.Addrs = []string{"10.0.0.1:26379", "[fd00::2]:26379"}
	want.Redis.MasterName, want.Redis.Username, want.Redis.Password = "mymaster", "herald", "env:REDIS_PASSWORD"
	want.Redis.SentinelPassword, want.Redis.TLS, want.Redis.TLSCAFile, want.Redis.MinReplicas = "s3ntinel", true, "/etc/herald/redis-ca.pem", 2
	if !reflect.DeepEqual(sentinel, want) {
		t.Errorf("got %+v\nwant %+v", sentinel.Redis, want.Redis)
	}
	if text := sentinel.Redacted().YAML(); strings.Contains(text, "s3ntinel") || !strings.Contains(text, `password: "env:REDIS_PASSWORD"`) {
		t.Errorf("the Sentinel password is shown, or where the data nodes' password comes from is not:\n%s", text)
	}
	back, err := Parse("printed", []byte(sentinel.YAML()))
	if err != nil || !reflect.DeepEqual(back, sentinel) {
		t.Errorf("the printed config reads back as %+v, %v", back.Redis, err)
	}

	path := filepath.Join(t.TempDir(), "config.yaml")
	cluster := "broker: redis\nredis:\n  addrs: [10.0.0.1:7000, 10.0.0.2:7000, 10.0.0.3:7000]\n  password: env:REDIS_PASSWORD\n"
	if err := os.WriteFile(path, []byte(cluster), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, source, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.ReadSecrets(source, func(string) string { return "" }); err == nil || err.Error() != path+":4: redis.password: the environment variable REDIS_PASSWORD is not set or empty" {
		t.Errorf("an unset password variable gave %v", err)
	}
	if secrets, err := cfg.ReadSecrets(source, oneVariable("REDIS_PASSWORD")("pw")); err != nil || secrets.RedisPassword != "pw" {
		t.Errorf("a set password variable gave %q, %v", secrets.RedisPassword, err)
	}
	// A URL from the environment beside addrs in the file is both.
	err = ApplyEnv(&cfg, oneVariable("HERALD_REDIS_URL")("redis://10.0.0.9:6379/0"))
	if err == nil || err.Error() != "HERALD_REDIS_URL: redis.addrs is set too: set redis.url for one Redis, or redis.addrs for Sentinel or a Cluster, not both" {
		t.Errorf("HERALD_REDIS_URL beside redis.addrs gave %v", err)
	}
}

func TestConfigYAMLReadsBackToTheSameConfig(t *testing.T) {
	t.Parallel()
	changed := Default()
	changed.Host = `odd "host"`
	changed.History.TTL = 90 * time.Minute
	changed.WebSocket.PingInterval = 1500 * time.Millisecond
	changed.History.File = "/var/lib/herald/history.db"
	changed.Security.Anonymous = "read-only"
	changed.Security.Tokens = []access.TokenConfig{
		{Name: "ci", Secret: "s3cret", Write: []string{"deploys"}, Read: []string{}, Expires: "2027-01-31"},
		{Name: "team", Secret: "env:HOME", Read: []string{"team-*", "status"}, Write: []string{}},
	}
	changed.Redis.Prefix = "staging:herald:"
	changed.Redis.Timeout = 1500 * time.Millisecond
	changed.Security.JWT = access.JWTConfig{Secret: "0123456789abcdef0123456789abcdef", Audience: "herald", Issuer: "me"}
	for _, cfg := range []Config{Default(), changed} {
		text := cfg.YAML()
		back, err := Parse("printed", []byte(text))
		if err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		if !reflect.DeepEqual(back, cfg) {
			t.Errorf("read back %+v, want %+v\n%s", back, cfg, text)
		}
	}
	if text := changed.Redacted().YAML(); strings.Contains(text, "s3cret") || strings.Contains(text, "0123456789abcdef") || !strings.Contains(text, `"env:HOME"`) {
		t.Errorf("secrets are shown, or where they come from is not:\n%s", text)
	}
	if text := Default().YAML(); !strings.Contains(text, "  ttl: 24h\n") || !strings.Contains(text, "shutdown_grace: 10s\n") {
		t.Errorf("durations are not written the way people write them:\n%s", text)
	}
}

// TestUnknownKeysNearAKnownOneSuggestIt: a key one or two typing slips
// from a known key at the same level names it; one near nothing says
// only that it is unknown.
func TestUnknownKeysNearAKnownOneSuggestIt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		givenYAML, expectError string
	}{
		{"port: 9000\nprot: 1\n", "test.yaml:2: prot: unknown key; did you mean port?"},
		{"Port: 1\n", "test.yaml:1: Port: unknown key; did you mean port?"},
		{"paths:\n  wss: /x\n", "test.yaml:2: paths.wss: unknown key; did you mean paths.ws?"},
		{"websocket:\n  pingInterval: 5s\n", "test.yaml:2: websocket.pingInterval: unknown key; did you mean websocket.ping_interval?"},
		{"security:\n  allowed_origin: [\"*\"]\n", "test.yaml:2: security.allowed_origin: unknown key; did you mean security.allowed_origins?"},
		{"security:\n  tokens:\n    - name: ci\n      secret: s\n      writes: [a]\n", "test.yaml:5: security.tokens[0].writes: unknown key; did you mean security.tokens[0].write?"},
		{"histroy:\n  size: 1\n", "test.yaml:1: histroy: unknown key; did you mean history?"},
		{"colour: blue\n", "test.yaml:1: colour: unknown key"},
		{"paths:\n  websocket: /x\n", "test.yaml:2: paths.websocket: unknown key"},
	}
	for _, tc := range tests {
		_, err := Parse("test.yaml", []byte(tc.givenYAML))
		if err == nil || err.Error() != tc.expectError {
			t.Errorf("%q: got %v, want %q", tc.givenYAML, err, tc.expectError)
		}
	}
}

// TestSecretsThatCannotBeReadNameTheirFileAndLine: an env: secret whose
// variable is not set is a problem in the file like any other, found
// when the secrets are read, after loading.
func TestSecretsThatCannotBeReadNameTheirFileAndLine(t *testing.T) {
	t.Parallel()
	env := func(name string) string {
		return map[string]string{"HERALD_CI_TOKEN": "ci-secret", "SHORT": "twelve bytes"}[name]
	}
	tests := []struct {
		name, givenYAML, expectError string
	}{
		{"givenAnUnsetTokenVariable", "port: 0\nsecurity:\n  tokens:\n    - name: ci\n      secret: env:HERALD_CI_TOKEN\n      write: [a]\n    - name: team\n      secret: env:HERALD_TEAM_TOKEN\n      read: [a]\n",
			"config.yaml:8: security.tokens[1].secret: the environment variable HERALD_TEAM_TOKEN is not set or empty"},
		{"givenAnUnsetJWTVariable", "security:\n  jwt:\n    secret: env:HERALD_JWT_SECRET\n",
			"config.yaml:3: security.jwt.secret: the environment variable HERALD_JWT_SECRET is not set or empty"},
		{"givenAShortJWTSecretInTheEnvironment", "security:\n  jwt:\n    secret: env:SHORT\n",
			"config.yaml:3: security.jwt.secret: the HMAC secret is 12 bytes"},
		{"givenAnUnsetPublishTokenVariable", "security:\n  publish_token: env:HERALD_PUB\n",
			"config.yaml:2: security.publish_token: the environment variable HERALD_PUB is not set or empty"},
		{"givenAnUnsetAdminTokenVariable", "security:\n  admin_token: env:HERALD_ADMIN\n",
			"config.yaml:2: security.admin_token: the environment variable HERALD_ADMIN is not set or empty"},
		{"givenTwoTokensWithOneSecret", "security:\n  tokens:\n    - {name: a, secret: env:HERALD_CI_TOKEN, read: [x]}\n    - {name: b, secret: ci-secret, read: [x]}\n",
			`config.yaml:4: security.tokens[1].secret: "b" has the same secret as "a"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(tc.givenYAML), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, source, err := Load(path)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			_, err = cfg.ReadSecrets(source, env)
			if want := filepath.Join(filepath.Dir(path), tc.expectError); err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("got %v, want %s...", err, want)
			}
		})
	}
	if _, err := Default().ReadSecrets(Source{Name: "built-in defaults"}, env); err != nil {
		t.Errorf("the defaults have a secret that cannot be read: %v", err)
	}
}
