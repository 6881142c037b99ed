package config

import (
	"errors"
	"fmt"
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

// Error is a problem with one configuration key. Its message is one
// line that names the source, the line when known, and the key.
type Error struct {
	Source  string // file name or environment variable
	Line    int    // 0 when unknown
	Key     string // dotted path, such as "paths.ws"
	Problem string
}

// Error is the one line a user sees: source, line, key and problem.
func (e *Error) Error() string {
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

// Source says where a configuration came from: its file and the line of
// every key the file set, so that a problem found after loading, such as a
// secret that cannot be read, still names its line; and what the files
// holding its secrets held when loading checked them, so that each file is
// read once.
type Source struct {
	// Name is the file, or whatever else the configuration came from.
	Name  string
	lines map[string]int
	files *access.SecretFiles // nil when nothing was loaded
}

// Problem is err, found with the value of key, as a Error at the
// key's line.
func (s Source) Problem(key string, err error) *Error {
	return &Error{Source: s.Name, Line: lineOf(s.lines, key), Key: key, Problem: err.Error()}
}

// secretFiles reads the files that secrets are kept in, and gives back
// what loading read of them.
func (s Source) secretFiles() *access.SecretFiles {
	if s.files == nil {
		return access.NewSecretFiles()
	}
	return s.files
}

// Load reads the YAML file at path over the defaults and validates it,
// which reads the files that security.tokens and security.jwt keep their
// secrets in. ReadSecrets reads the other secrets, and uses what loading
// read.
func Load(path string) (Config, Source, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, Source{}, fmt.Errorf("read config: %w", err)
	}
	return parse(path, data)
}

// Parse decodes YAML over the defaults and validates the result. Keys
// that Herald does not know are errors, not silently ignored: a typo in a
// key would otherwise leave a default in force without anyone noticing.
func Parse(source string, data []byte) (Config, error) {
	cfg, _, err := parse(source, data)
	return cfg, err
}

func parse(name string, data []byte) (Config, Source, error) {
	cfg := Default()
	source := Source{Name: name, lines: map[string]int{}, files: access.NewSecretFiles()}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, problem := yamlProblem(data, err)
		return Config{}, Source{}, &Error{Source: name, Line: line, Problem: problem}
	}
	if len(doc.Content) > 0 {
		d := decoder{source: name, lines: source.lines}
		if err := d.decodeStruct(doc.Content[0], reflect.ValueOf(&cfg).Elem(), ""); err != nil {
			return Config{}, Source{}, err
		}
	}
	if err := cfg.validate(name, source.lines, source.files); err != nil {
		return Config{}, Source{}, err
	}
	return cfg, source, nil
}

// Secrets is what the secrets a Config refers to hold, each read once,
// for the parts that use them.
type Secrets struct {
	// Policy decides who may read and write which topics, with the
	// secrets of security.tokens, the single tokens and security.jwt.
	Policy *access.Policy
	// AdminToken is security.admin_token's secret; "" when none is set.
	AdminToken string
	// RedisPassword and RedisSentinelPassword are redis.password and
	// redis.sentinel_password; "" when not set.
	RedisPassword, RedisSentinelPassword string
}

// ReadSecrets reads every secret c refers to, env:NAME with getenv and
// file:PATH from its file (as loading found it, when loading read it),
// builds the access policy from them, and reports the first that cannot
// be used at its line in source. Loading leaves this to a separate step,
// since not every command needs every secret: herald token needs only the
// JWT key (JWTSecret).
func (c Config) ReadSecrets(source Source, getenv func(string) string) (Secrets, error) {
	files := source.secretFiles()
	accessConfig := c.Security.Access()
	accessConfig.Getenv, accessConfig.Files = getenv, files
	policy, err := access.NewPolicy(accessConfig, nil)
	if err != nil {
		var keyErr *access.KeyError
		if errors.As(err, &keyErr) {
			return Secrets{}, source.Problem("security."+keyErr.Key, keyErr.Err)
		}
		return Secrets{}, err
	}
	secrets := Secrets{Policy: policy}
	for _, secret := range []struct {
		key, ref string
		to       *string
	}{
		{"security.admin_token", c.Security.AdminToken, &secrets.AdminToken},
		{"redis.password", c.Redis.Password, &secrets.RedisPassword},
		{"redis.sentinel_password", c.Redis.SentinelPassword, &secrets.RedisSentinelPassword},
	} {
		if secret.ref == "" {
			continue
		}
		if *secret.to, err = files.ReadSecret(secret.ref, getenv); err != nil {
			return Secrets{}, source.Problem(secret.key, err)
		}
	}
	return secrets, nil
}

// JWTSecret reads security.jwt.secret alone, as ReadSecrets would: it is
// all that herald token signs with.
func (c Config) JWTSecret(source Source, getenv func(string) string) (string, error) {
	secret, err := source.secretFiles().ReadSecret(c.Security.JWT.Secret, getenv)
	if err != nil {
		return "", source.Problem("security.jwt.secret", err)
	}
	return secret, nil
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
				return &Error{Source: name, Problem: "has spaces at its start or end, which clients would not send"}
			}
			*token = v
		}
	}
	if v := getenv("HERALD_REDIS_URL"); v != "" {
		if _, err := redis.ParseURL(v); err != nil {
			return &Error{Source: "HERALD_REDIS_URL", Problem: redisURLProblem(err)}
		}
		if len(cfg.Redis.Addrs) > 0 {
			return &Error{Source: "HERALD_REDIS_URL", Problem: "redis.addrs is set too: " + bothRedisURLAndAddrs}
		}
		cfg.Redis.URL = v
	}
	if v := getenv("HERALD_PORT"); v != "" {
		port, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || !validPort(port) {
			return &Error{Source: "HERALD_PORT", Problem: fmt.Sprintf("%q %s", v, notAPort)}
		}
		cfg.Port = port
	}
	return nil
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
		return &Error{Source: d.source, Line: node.Line, Key: prefix, Problem: "want a section of keys"}
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
			return &Error{Source: d.source, Line: keyNode.Line, Key: key, Problem: problem}
		}
		if seen[key] {
			return &Error{Source: d.source, Line: keyNode.Line, Key: key, Problem: "given twice"}
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
			return &Error{Source: d.source, Line: valueNode.Line, Key: key, Problem: "want " + kindName(field.Type())}
		}
		if err := valueNode.Decode(field.Addr().Interface()); err != nil {
			return &Error{Source: d.source, Line: valueNode.Line, Key: key,
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
		return &Error{Source: d.source, Line: node.Line, Key: key, Problem: "want " + kindName(out.Type())}
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
			return &Error{Source: d.source, Line: item.Line, Key: itemKey,
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
