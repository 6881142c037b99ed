package app

import (
	"regexp"
	"testing"
)

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
