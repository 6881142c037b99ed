package redistest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name the Sentinel knows the master by.
const SentinelMaster = "herald"

// Sentinel is a master, its replica and one Sentinel that watches them,
// each a redis-server on a free loopback port. The Sentinel fails over on
// its own (a quorum of 1) a second after the master stops answering.
type Sentinel struct {
	// Master and Replica are the servers as they started; after a
	// failover the replica is the master.
	Master, Replica *Server
	// Sentinel watches the master as SentinelMaster.
	Sentinel *Server
}

// SentinelOptions protect a Sentinel and the servers it watches.
type SentinelOptions struct {
	// Password, when set, is the master's and the replica's.
	Password string
	// SentinelPassword, when set, is the Sentinel's.
	SentinelPassword string
	// TLS, when set, has every server speak TLS alone.
	TLS *TLS
}

// StartSentinel runs the three until the test ends, and returns once the
// replica has the master's data, so that the Sentinel can fail over from
// then on.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	return StartSentinelWith(t, SentinelOptions{})
}

// StartSentinelWith is StartSentinel, protected as opts say.
func StartSentinelWith(t testing.TB, opts SentinelOptions) *Sentinel {
	t.Helper()
	requireRedis(t)
	var auth []string
	if opts.Password != "" {
		auth = []string{"--requirepass", opts.Password, "--masterauth", opts.Password}
	}
	s := &Sentinel{Master: startOn(t, FreePort(t), opts.TLS, auth...)}
	replica := append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(s.Master.Port)}, auth...)
	s.Replica = startOn(t, FreePort(t), opts.TLS, replica...)
	s.Replica.AwaitLog(t, "MASTER <-> REPLICA sync: Finished with success")

	// Sentinel rewrites its config file as it learns, so it gets one of
	// its own. It is told of the replica, rather than left to find it at
	// its next look at the master, which can be seconds away.
	port := FreePort(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 1\n"+
		"sentinel down-after-milliseconds %[1]s 1000\n"+
		"sentinel failover-timeout %[1]s 3000\n"+
		"sentinel known-replica %[1]s 127.0.0.1 %[3]d\n", SentinelMaster, s.Master.Port, s.Replica.Port)
	if opts.Password != "" {
		text += fmt.Sprintf("sentinel auth-pass %s %s\n", SentinelMaster, opts.Password)
	}
	if opts.SentinelPassword != "" {
		text += fmt.Sprintf("requirepass %s\n", opts.SentinelPassword)
	}
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Sentinel = &Server{Port: port, dir: dir, args: []string{conf, "--sentinel"}, ready: "+monitor master", sentinel: true, tls: opts.TLS}
	s.Sentinel.Restart(t)
	t.Cleanup(func() { s.Sentinel.Kill(t) })
	return s
}

// Addrs are the Sentinel's host:port addresses, as Herald is given them.
func (s *Sentinel) Addrs() []string { return []string{s.Sentinel.Addr()} }

// Client is a client of the Sentinel, for the test's own commands and to
// follow its events, closed when the test ends.
func (s *Sentinel) Client(t testing.TB) *redis.SentinelClient {
	t.Helper()
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr()})
	t.Cleanup(func() { c.Close() })
	return c
}

// RejoinOldMaster starts the master that was killed again, on its data,
// as a replica of the new master (the old replica), as an operator
// restarting the dead machine would, and returns once it has the new
// master's data: what it had that the new master never got is gone.
func (s *Sentinel) RejoinOldMaster(t testing.TB) {
	t.Helper()
	s.Master.restartWith(t, "--replicaof", "127.0.0.1", strconv.Itoa(s.Replica.Port))
	s.Master.AwaitLog(t, "MASTER <-> REPLICA sync: Finished with success")
}
