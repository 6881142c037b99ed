package main

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// readme is the README's text.
func readme(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// readmeSample is the rest of the README's code block after the line
// that starts with prompt, up to the block's end.
func readmeSample(t *testing.T, prompt string) string {
	t.Helper()
	_, after, found := strings.Cut(readme(t), "\n"+prompt)
	if !found {
		t.Fatalf("the README has no sample starting %q", prompt)
	}
	_, sample, _ := strings.Cut(after, "\n")
	sample, _, _ = strings.Cut(sample, "```")
	return sample
}

// TestReadmeEventStreamSampleIsWhatTheServerSends: the bytes of the
// README's curl -N sample are the bytes the server sends, but for the ids.
func TestReadmeEventStreamSampleIsWhatTheServerSends(t *testing.T) {
	t.Parallel()
	sample := readmeSample(t, "$ curl -N localhost:9000/events")
	h := startHerald(t, "")
	resp, err := http.Get(h.Origin + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	stream := bufio.NewReader(resp.Body)
	// The stream opens with its greeting before anything is published.
	var got strings.Builder
	for !regexp.MustCompile(`retry: 2000\nid: \d+\n\n$`).MatchString(got.String()) {
		b, err := stream.ReadByte()
		if err != nil {
			t.Fatalf("the stream ended after %q: %v", got.String(), err)
		}
		got.WriteByte(b)
	}
	receipt := h.publish(t, "HelloWorld")
	for !strings.HasSuffix(got.String(), "data: HelloWorld\n\n") {
		b, err := stream.ReadByte()
		if err != nil {
			t.Fatalf("the stream ended after %q: %v", got.String(), err)
		}
		got.WriteByte(b)
	}
	// The stream starts after the last message before it; then comes the
	// one published.
	ids := []string{strconv.FormatUint(receipt.id(t)-1, 10), receipt.ID}
	want := regexp.MustCompile(`id: \d+\n`).ReplaceAllStringFunc(sample, func(string) string {
		id := ids[0]
		ids = ids[1:]
		return "id: " + id + "\n"
	})
	if got.String() != want {
		t.Errorf("the server sent\n%q\nthe README shows\n%q", got.String(), want)
	}
}

// TestReadmeVersionSampleIsWhatABuildWithACommitPrints takes the README's
// herald -version sample apart and has describeBuild put a build with
// those parts into words: the sample must be that line exactly.
func TestReadmeVersionSampleIsWhatABuildWithACommitPrints(t *testing.T) {
	t.Parallel()
	sample := strings.TrimSpace(strings.SplitN(readmeSample(t, "$ herald -version"), "\n", 2)[0])
	field := func(pattern string) string {
		found := regexp.MustCompile(pattern).FindString(sample)
		if found == "" {
			t.Fatalf("the README's -version sample %q has no %s", sample, pattern)
		}
		return found
	}
	info := &debug.BuildInfo{
		GoVersion: field(`go1\.[0-9.]+$`),
		Main:      debug.Module{Version: strings.TrimSuffix(field(`^herald v\S+`), ",")[len("herald "):]},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: field(`\b[0-9a-f]{40}\b`)},
			{Key: "vcs.time", Value: field(`\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\b`)},
			{Key: "vcs.modified", Value: "false"},
		},
	}
	if want := describeBuild("", info, true); sample != want {
		t.Errorf("the README's -version sample is\n%q\na build with its commit prints\n%q", sample, want)
	}
}

// TestReadmeNamesEveryHistoryValueOfReadyz starts Herald with history in
// memory, in a file and in Redis, and finds each /readyz answer in the
// README.
func TestReadmeNamesEveryHistoryValueOfReadyz(t *testing.T) {
	t.Parallel()
	text := readme(t)
	redis := startRedis(t)
	for _, config := range []string{"", "history:\n  file: " + filepath.Join(t.TempDir(), "h.db") + "\n", redis.heraldYAML()} {
		h := startHerald(t, config)
		resp, err := http.Get(h.Origin + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		body := strings.TrimSpace(string(raw))
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(text, "`"+body+"`") {
			t.Errorf("/readyz answered %d %s, which the README does not show", resp.StatusCode, body)
		}
		h.Stop(t)
	}
}

// TestReadmeRunsTheArticlesClientAsTheTestsDo: where the README runs the
// article's Python client, it runs the interpreter the tests run, and
// says which package it needs.
func TestReadmeRunsTheArticlesClientAsTheTestsDo(t *testing.T) {
	t.Parallel()
	text := readme(t)
	line := regexp.MustCompile(`(?m)^.*testdata/seed_client\.py ws://.*$`).FindString(text)
	if !strings.HasPrefix(line, "/usr/bin/python3 ") {
		t.Errorf("the README runs the article's client as %q, not with /usr/bin/python3", line)
	}
	_, after, _ := strings.Cut(text, line)
	if paragraph, _, _ := strings.Cut(after, "\n\n- "); !strings.Contains(paragraph, "python3-ws4py") {
		t.Errorf("the README does not say beside the command that it needs python3-ws4py:\n%s", paragraph)
	}
}

// TestReadmeSpeaksToUsers: the README is a user's manual; the names of
// issue items and the word "seed" for the article's client mean nothing
// to its readers.
func TestReadmeSpeaksToUsers(t *testing.T) {
	t.Parallel()
	text := readme(t)
	for _, pattern := range []string{`\bitems? \d+`, `(?i)\bthe seed\b`, `(?i)\bseed(-|'s| article| client)`} {
		for _, found := range regexp.MustCompile(pattern).FindAllString(text, -1) {
			t.Errorf("the README says %q", found)
		}
	}
}
