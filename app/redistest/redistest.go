// Package redistest runs a real redis-server for one test, so that tests
// of the Redis broker fault Redis as a deployment sees it: killed as in a
// crash, started again with or without its data, or frozen mid-command.
// Only tests import it.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server on a free loopback port, with its data in the
// test's temp dir. It keeps an append-only file synced on every write, as
// a deployment that must not lose acknowledged messages would.
type Server struct {
	// Port is the TCP port it listens on, the same across restarts.
	Port int
	dir  string
	cmd  *exec.Cmd
}

// Start runs redis-server until the test ends. Without redis-server the
// test is skipped, or fails when HERALD_REQUIRE_E2E is set.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		const what = "redis-server (Debian package redis-server)"
		if os.Getenv("HERALD_REQUIRE_E2E") != "" {
			t.Fatalf("%s is missing, and HERALD_REQUIRE_E2E is set", what)
		}
		t.Skipf("%s is missing; set HERALD_REQUIRE_E2E=1 to make this a failure", what)
	}
	s := &Server{Port: FreePort(t), dir: t.TempDir()}
	s.Restart(t)
	t.Cleanup(func() { s.Kill(t) })
	return s
}

// Restart runs redis-server again on the same port and data, once Kill
// stopped it, and returns once it accepts connections, which it says on
// stdout.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.cmd = exec.Command("redis-server",
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no")
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	var said []string
	for lines.Scan() {
		said = append(said, lines.Text())
		if strings.Contains(lines.Text(), "Ready to accept connections") {
			go func() {
				for lines.Scan() { // keep the pipe drained until redis-server exits
				}
			}()
			return
		}
	}
	s.cmd.Wait()
	t.Fatalf("redis-server did not start:\n%s", strings.Join(said, "\n"))
}

// RestartEmpty kills redis-server and starts a new one on the same port
// without its data, as when Redis is replaced by an empty one.
func (s *Server) RestartEmpty(t testing.TB) {
	t.Helper()
	s.Kill(t)
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	s.Restart(t)
}

// Kill stops redis-server at once, as a crash would. A frozen server dies
// too.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Freeze stops redis-server with SIGSTOP: its connections stay open and
// what clients send waits, unread, until Thaw.
func (s *Server) Freeze(t testing.TB) { s.signal(t, syscall.SIGSTOP) }

// Thaw lets a frozen redis-server go on with SIGCONT: it then serves what
// waited, in order.
func (s *Server) Thaw(t testing.TB) { s.signal(t, syscall.SIGCONT) }

func (s *Server) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal redis-server: %v", err)
	}
}

// URL is the address a Redis client is given.
func (s *Server) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.Port) }

// Client is a Redis client for the test's own commands, closed when the
// test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.Port)})
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	return c
}

// freePort returns a loopback port that was free a moment ago.
// FreePort is a loopback port that is free now, for a server that a test
// starts, stops and starts again on it. It is taken below the kernel's
// ephemeral range, which outgoing connections draw their own ports from:
// a port from that range can be taken by one of them while the server is
// down, and the restart then fails.
func FreePort(t testing.TB) int {
	t.Helper()
	ephemeral := 32768 // Linux's default start of the range
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if fields := strings.Fields(string(data)); len(fields) > 0 {
			if low, err := strconv.Atoi(fields[0]); err == nil {
				ephemeral = low
			}
		}
	}
	const lowest = 10000
	for range 1000 {
		port := lowest + rand.IntN(max(ephemeral-lowest, 1))
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			l.Close()
			return port
		}
	}
	t.Fatalf("no free port between %d and %d", lowest, ephemeral)
	return 0
}
