// Package readinesstest makes a readiness Poller fail for real, for tests
// of what its watchers do then.
package readinesstest

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// BreakEpoll makes the next epoll_wait on epollFD fail for real, with
// EINVAL: /dev/null is put under that number. The epoll instance stays
// open under a duplicate until the test ends, so that Go's poller, which
// watches the instance and not the number, still wakes the goroutine
// waiting on it when a watched socket gets bytes. The returned function
// puts the instance back under its number, as a fault that leaves the
// descriptor usable would; it must be called while the number is still
// open.
func BreakEpoll(t testing.TB, epollFD int) (repair func()) {
	t.Helper()
	instance, err := unix.Dup(epollFD)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(instance) })
	devNull, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(devNull)
	if err := unix.Dup3(devNull, epollFD, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := unix.Dup3(instance, epollFD, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
	}
}

// EpollWatching is the descriptor of this process's epoll instance that
// watches the socket at socketFD with data as its event data, found in
// /proc/self/fdinfo, whose lines for an epoll instance read
// "tfd: FD events: MASK data: DATA ...". It fails the test if there is none.
func EpollWatching(t testing.TB, socketFD int, data uint64) int {
	t.Helper()
	links, err := filepath.Glob("/proc/self/fd/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, link := range links {
		if target, err := os.Readlink(link); err != nil || target != "anon_inode:[eventpoll]" {
			continue
		}
		fd, err := strconv.Atoi(filepath.Base(link))
		if err == nil && watches(fd, socketFD, data) {
			return fd
		}
	}
	t.Fatalf("no epoll instance watches socket %d with data %d", socketFD, data)
	return -1
}

func watches(epollFD, socketFD int, data uint64) bool {
	f, err := os.Open("/proc/self/fdinfo/" + strconv.Itoa(epollFD))
	if err != nil {
		return false
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		fields := strings.Fields(lines.Text())
		if len(fields) < 6 || fields[0] != "tfd:" || fields[4] != "data:" {
			continue
		}
		tfd, _ := strconv.Atoi(fields[1])
		got, _ := strconv.ParseUint(fields[5], 16, 64)
		if tfd == socketFD && got == data {
			return true
		}
	}
	return false
}
