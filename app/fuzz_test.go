package app

import (
	"reflect"
	"regexp"
	"testing"
)

// Any file either loads to a valid config that prints and reads back to
// itself, or is refused with a ConfigError; nothing panics.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("port: 9000\npaths:\n  ws: /ws\n"))
	f.Add([]byte("history:\n  ttl: 1h\n  size: 0\nsecurity:\n  allowed_origins: [https://a.example]\n"))
	f.Add([]byte("limits:\n  publish_per_second: 0.5\n"))
	f.Add([]byte("port: [1]\n"))
	f.Add([]byte("paths: {page: /x, ws: /x}\n"))
	f.Add([]byte("\t: :\n- -"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig("fuzz.yaml", data)
		if err != nil {
			if _, ok := err.(*ConfigError); !ok {
				t.Fatalf("error %v is not a ConfigError", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("loaded a config that does not validate: %v", err)
		}
		back, err := ParseConfig("printed", []byte(cfg.YAML()))
		if err != nil || !reflect.DeepEqual(back, cfg) {
			t.Fatalf("printed config reads back as %+v, %v; want %+v", back, err, cfg)
		}
	})
}

// CheckTopic accepts exactly the names the README promises.
func FuzzCheckTopic(f *testing.F) {
	valid := regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	for _, seed := range []string{"default", "", "a/b", "news.eu-1_X", "café", "#sequence-starts"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if err := CheckTopic(name); (err == nil) != valid.MatchString(name) {
			t.Fatalf("CheckTopic(%q) = %v", name, err)
		}
	})
}
