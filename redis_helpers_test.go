package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// redisServer is a real redis-server for one test, on a free port, with its
// data in the test's temp dir. It keeps an append-only file synced on every
// write, as a deployment that must not lose acknowledged messages would.
type redisServer struct {
	port int
	dir  string
	cmd  *exec.Cmd
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		requireEnv(t, "redis-server (Debian package redis-server)")
	}
	r := &redisServer{port: freePort(t), dir: t.TempDir()}
	r.start(t)
	t.Cleanup(func() { r.kill(t) })
	return r
}

// start runs redis-server and returns once it accepts connections, which
// it says on stdout.
func (r *redisServer) start(t *testing.T) {
	t.Helper()
	r.cmd = exec.Command("redis-server",
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no")
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	var said []string
	for lines.Scan() {
		said = append(said, lines.Text())
		if strings.Contains(lines.Text(), "Ready to accept connections") {
			go func() {
				for lines.Scan() { // keep the pipe drained
				}
			}()
			return
		}
	}
	r.cmd.Wait()
	t.Fatalf("redis-server did not start:\n%s", strings.Join(said, "\n"))
}

// kill stops redis-server at once, as a crash would.
func (r *redisServer) kill(t *testing.T) {
	t.Helper()
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Kill()
	r.cmd.Wait()
	r.cmd = nil
}

// url is the address Herald is given.
func (r *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

// client is a Redis client for the test's own commands.
func (r *redisServer) client(t *testing.T) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.port)})
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	return c
}

// heraldYAML is the config of one instance over this Redis.
func (r *redisServer) heraldYAML() string {
	return "broker: redis\nredis:\n  url: " + r.url() + "\n  timeout: 2s\n"
}
