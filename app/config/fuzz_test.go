package config

import (
	"reflect"
	"testing"
)

// Any file either loads to a valid config that prints and reads back to
// itself, or is refused with an Error; nothing panics.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("port: 9000\npaths:\n  ws: /ws\n"))
	f.Add([]byte("history:\n  ttl: 1h\n  size: 0\nsecurity:\n  allowed_origins: [https://a.example]\n"))
	f.Add([]byte("limits:\n  publish_per_second: 0.5\n"))
	f.Add([]byte("port: [1]\n"))
	f.Add([]byte("paths: {page: /x, ws: /x}\n"))
	f.Add([]byte("\t: :\n- -"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %v is not an Error", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("loaded a config that does not validate: %v", err)
		}
		back, err := Parse("printed", []byte(cfg.YAML()))
		if err != nil || !reflect.DeepEqual(back, cfg) {
			t.Fatalf("printed config reads back as %+v, %v; want %+v", back, err, cfg)
		}
	})
}
