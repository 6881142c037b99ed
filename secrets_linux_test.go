package main

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// openCounter counts the opens of one file with inotify. The kernel queues
// an open's event before the open returns, so once a command has done its
// start-up, every open it made is counted. It watches closes too: inotify
// merges an event into the one queued before it when the two are alike,
// and a close between two opens keeps them apart.
type openCounter struct{ fd int }

func countOpens(t *testing.T, path string) *openCounter {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if _, err := syscall.InotifyAddWatch(fd, path, syscall.IN_OPEN|syscall.IN_CLOSE); err != nil {
		t.Fatalf("watch %s: %v", path, err)
	}
	return &openCounter{fd: fd}
}

// opens is how often the file was opened since the last call.
func (c *openCounter) opens(t *testing.T) int {
	t.Helper()
	n := 0
	buf := make([]byte, 64*syscall.SizeofInotifyEvent)
	for {
		read, err := syscall.Read(c.fd, buf)
		if errors.Is(err, syscall.EAGAIN) {
			return n
		}
		if err != nil {
			t.Fatalf("read inotify events: %v", err)
		}
		for at := 0; at+syscall.SizeofInotifyEvent <= read; {
			event := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[at]))
			if event.Mask&syscall.IN_Q_OVERFLOW != 0 {
				t.Fatal("inotify lost events")
			}
			if event.Mask&syscall.IN_OPEN != 0 {
				n++
			}
			at += syscall.SizeofInotifyEvent + int(event.Len)
		}
	}
}

// TestEverySecretFileIsReadOnceAtStartUp: each file a secret is kept in is
// read once by each command, however many parts need the secret, so that
// a file replaced while Herald starts cannot leave the parts holding a
// secret other than the one checked, or two different ones.
func TestEverySecretFileIsReadOnceAtStartUp(t *testing.T) {
	t.Parallel()
	const secret = "a-secret-of-at-least-thirty-two-bytes"
	tests := []struct {
		name string
		// givenYAML is the config, with FILE where the secret's file goes.
		givenYAML string
		// publicKey says the file is a PEM public key, not a secret.
		publicKey bool
		// givenRedis starts a Redis for the config to name, as REDIS.
		givenRedis bool
		// whenCommand is the command, "" for serve.
		whenCommand []string
		// expectAccepted is a request with the secret that the server must
		// answer with 200: the secret read is the one in force.
		expectAccepted func(h *heraldProcess) *http.Request
	}{
		{name: "givenAScopedTokenWhenServing",
			givenYAML: "security:\n  tokens:\n    - name: ci\n      secret: file:FILE\n      read: [\"*\"]\n",
			expectAccepted: func(h *heraldProcess) *http.Request {
				req, _ := http.NewRequest(http.MethodGet, h.Origin+"/access", nil)
				req.Header.Set("Authorization", "Bearer "+secret)
				return req
			}},
		{name: "givenThePublishTokenWhenServing", givenYAML: "security:\n  publish_token: file:FILE\n"},
		{name: "givenTheAdminTokenWhenServing", givenYAML: "security:\n  admin_token: file:FILE\n",
			expectAccepted: func(h *heraldProcess) *http.Request {
				req, _ := http.NewRequest(http.MethodGet, h.Origin+"/metrics", nil)
				req.Header.Set("Authorization", "Bearer "+secret)
				return req
			}},
		{name: "givenTheJWTSecretWhenServing", givenYAML: "security:\n  jwt:\n    secret: file:FILE\n"},
		{name: "givenTheJWTPublicKeyWhenServing", givenYAML: "security:\n  jwt:\n    public_key_file: FILE\n", publicKey: true},
		// A Redis without a password lets in a client that gives one.
		{name: "givenTheRedisPasswordWhenServing", givenRedis: true,
			givenYAML: "broker: redis\nredis:\n  url: REDIS\n  password: file:FILE\n"},
		{name: "givenAScopedTokenWhenCheckingTheConfig", whenCommand: []string{"check-config"},
			givenYAML: "security:\n  tokens:\n    - name: ci\n      secret: file:FILE\n      read: [\"*\"]\n"},
		{name: "givenTheJWTPublicKeyWhenCheckingTheConfig", whenCommand: []string{"check-config"},
			givenYAML: "security:\n  jwt:\n    public_key_file: FILE\n", publicKey: true},
		{name: "givenTheRedisPasswordWhenCheckingTheConfig", whenCommand: []string{"check-config"},
			givenYAML: "broker: redis\nredis:\n  password: file:FILE\n"},
		{name: "givenTheSentinelPasswordWhenCheckingTheConfig", whenCommand: []string{"check-config"},
			givenYAML: "broker: redis\nredis:\n  addrs: [10.0.0.1:26379]\n  master_name: main\n  sentinel_password: file:FILE\n"},
		{name: "givenTheJWTSecretWhenMintingAToken", whenCommand: []string{"token", "-sub", "ci", "-publish", "deploys"},
			givenYAML: "security:\n  jwt:\n    secret: file:FILE\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			file := ""
			if tc.publicKey {
				file = writePublicKeyFile(t)
			} else {
				file = writeTempFile(t, "secret", secret+"\n")
			}
			counter := countOpens(t, file)
			config := strings.ReplaceAll(tc.givenYAML, "FILE", file)
			if tc.givenRedis {
				config = strings.ReplaceAll(config, "REDIS", startRedis(t).URL())
			}
			if tc.whenCommand == nil {
				h := startHerald(t, config)
				if tc.expectAccepted != nil {
					resp, err := http.DefaultClient.Do(tc.expectAccepted(h))
					if err != nil {
						t.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Errorf("a request with the secret got %d, want 200", resp.StatusCode)
					}
				}
			} else {
				path := writeTempFile(t, "config.yaml", config)
				args := append([]string{"-config", path}, tc.whenCommand...)
				if err := run(t.Context(), args, func(string) string { return "" }, io.Discard, io.Discard); err != nil {
					t.Fatal(err)
				}
			}
			if n := counter.opens(t); n != 1 {
				t.Errorf("the file was opened %d times, want once", n)
			}
		})
	}
}
