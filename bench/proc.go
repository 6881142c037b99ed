package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// serverProbe reads a local server's CPU time and resident memory from
// /proc. With pid 0 it reads nothing and reports zeros.
type serverProbe struct{ pid int }

func newServerProbe(pid int) serverProbe { return serverProbe{pid: pid} }

// clockTicks is Linux's USER_HZ, the unit of /proc/PID/stat times, which is
// 100 on every architecture Go supports.
const clockTicks = 100

// cpu is the process's user plus system time so far.
func (p serverProbe) cpu() (time.Duration, error) {
	if p.pid == 0 {
		return 0, nil
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return 0, fmt.Errorf("bench: read the server's CPU time: %w", err)
	}
	// The command name is in parentheses and may hold spaces; fields count
	// from after it. utime and stime are fields 14 and 15 of the whole line.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("bench: /proc/%d/stat has %d fields after the name", p.pid, len(fields))
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: /proc/%d/stat: CPU times are not numbers", p.pid)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// rss is the process's resident memory in KiB.
func (p serverProbe) rss() (int64, error) {
	if p.pid == 0 {
		return 0, nil
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return 0, fmt.Errorf("bench: read the server's memory: %w", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bench: /proc/%d/status: VmRSS %q", p.pid, rest)
			}
			return kib, nil
		}
	}
	return 0, fmt.Errorf("bench: /proc/%d/status has no VmRSS", p.pid)
}
