// Package redistest runs real redis-servers for one test, so that tests
// of the Redis broker fault Redis as a deployment sees it: killed as in a
// crash, started again with or without its data, or frozen mid-command;
// a Redis Cluster of several masters whose slots move; a master with a
// replica and a Sentinel that fails over when the master dies. Only tests
// import it.
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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// hangGuard bounds how long a helper waits for redis-server to say
// something that never comes. It is not an assertion about speed.
const hangGuard = time.Minute

// Server is a redis-server on a free loopback port, with its data in the
// test's temp dir. It keeps an append-only file synced on every write, as
// a deployment that must not lose acknowledged messages would.
type Server struct {
	// Port is the TCP port it listens on, the same across restarts.
	Port int
	dir  string
	// args are what it is started with besides its port and data: a
	// cluster node's or a replica's settings, or a Sentinel's config file.
	args []string
	// ready is the line it prints once it accepts connections.
	ready string
	// sentinel is true for a Sentinel, which keeps no data.
	sentinel bool
	// tls, when set, has it serve TLS alone, on Port.
	tls *TLS
	cmd *exec.Cmd
	log *serverLog
}

// Start runs redis-server until the test ends. Without redis-server the
// test is skipped, or fails when HERALD_REQUIRE_E2E is set.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t)
}

// start runs a redis-server with args besides its port and data, until the
// test ends.
func start(t testing.TB, args ...string) *Server {
	t.Helper()
	return startOn(t, FreePort(t), nil, args...)
}

// startOn is start on port, serving TLS with tls when set.
func startOn(t testing.TB, port int, tls *TLS, args ...string) *Server {
	t.Helper()
	requireRedis(t)
	s := &Server{Port: port, dir: t.TempDir(), args: args, ready: "Ready to accept connections", tls: tls}
	s.Restart(t)
	t.Cleanup(func() { s.Kill(t) })
	return s
}

// requireRedis skips the test without redis-server, and redis-cli when
// it needs it, or fails it when HERALD_REQUIRE_E2E is set.
func requireRedis(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range append([]string{"redis-server"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			what := tool + " (Debian package redis-server)"
			if os.Getenv("HERALD_REQUIRE_E2E") != "" {
				t.Fatalf("%s is missing, and HERALD_REQUIRE_E2E is set", what)
			}
			t.Skipf("%s is missing; set HERALD_REQUIRE_E2E=1 to make this a failure", what)
		}
	}
}

// Restart runs redis-server again on the same port and data, once Kill
// stopped it, and returns once it accepts connections, which it says on
// stdout.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.restartWith(t)
}

// restartWith is Restart with more arguments, for this start only.
func (s *Server) restartWith(t testing.TB, more ...string) {
	t.Helper()
	args := append(append([]string{}, s.args...), more...)
	if s.tls != nil {
		args = append(args, s.tls.args(s.Port)...)
	} else {
		args = append(args, "--port", strconv.Itoa(s.Port))
	}
	args = append(args, "--bind", "127.0.0.1", "--dir", s.dir, "--daemonize", "no")
	if !s.sentinel {
		// A replica gets its first copy at once, rather than after the
		// seconds Redis waits for others to share it.
		args = append(args, "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--repl-diskless-sync-delay", "0")
	}
	s.cmd = exec.Command("redis-server", args...)
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.log = newServerLog(stdout) // reads stdout until redis-server exits
	if !s.log.await(s.ready, hangGuard) {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		t.Fatalf("redis-server did not start:\n%s", s.log.text())
	}
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

// Kill stops redis-server at once, as a crash (kill -9) would. A frozen
// server dies too.
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

// AwaitLog waits until redis-server has printed a line that holds text
// since it last started, and fails the test if it never does.
func (s *Server) AwaitLog(t testing.TB, text string) {
	t.Helper()
	if !s.log.await(text, hangGuard) {
		t.Fatalf("redis-server on port %d never said %q; it said:\n%s", s.Port, text, s.log.text())
	}
}

// Addr is its host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// URL is the address a Redis client is given.
func (s *Server) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.Port) }

// Client is a Redis client for the test's own commands, closed when the
// test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	return c
}

// serverLog keeps what a redis-server prints, so that a test can wait for
// a line rather than poll for the state it reports.
type serverLog struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced at every line, and at the end
	ended   bool
}

// newServerLog reads stdout until it ends, in a goroutine that ends with
// it, when redis-server exits.
func newServerLog(stdout interface{ Read([]byte) (int, error) }) *serverLog {
	l := &serverLog{changed: make(chan struct{})}
	go func() {
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			l.mu.Lock()
			l.lines = append(l.lines, lines.Text())
			close(l.changed)
			l.changed = make(chan struct{})
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.ended = true
		close(l.changed)
		l.mu.Unlock()
	}()
	return l
}

// await reports whether a line holding text came within guard.
func (l *serverLog) await(text string, guard time.Duration) bool {
	deadline := time.After(guard)
	seen := 0
	for {
		l.mu.Lock()
		for ; seen < len(l.lines); seen++ {
			if strings.Contains(l.lines[seen], text) {
				l.mu.Unlock()
				return true
			}
		}
		changed, ended := l.changed, l.ended
		l.mu.Unlock()
		if ended {
			return false
		}
		select {
		case <-changed:
		case <-deadline:
			return false
		}
	}
}

func (l *serverLog) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// FreePort is a loopback port that is free now, for a server that a test
// starts, stops and starts again on it. It is taken below the kernel's
// ephemeral range, which outgoing connections draw their own ports from:
// a port from that range can be taken by one of them while the server is
// down, and the restart then fails.
func FreePort(t testing.TB) int {
	t.Helper()
	return freePorts(t, 1)[0]
}

// freePorts returns n different loopback ports that are free now, below
// the ephemeral range (see FreePort): each is held until all are found, so
// none is found twice.
func freePorts(t testing.TB, n int) []int {
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
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000*n {
			t.Fatalf("no %d free ports between %d and %d", n, lowest, ephemeral)
		}
		port := lowest + rand.IntN(max(ephemeral-lowest, 1))
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		defer l.Close()
		ports = append(ports, port)
	}
	return ports
}
