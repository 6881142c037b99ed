package bench

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// pinnedCPU is the one CPU this process may run on, if it is pinned to one
// (taskset -c N).
func pinnedCPU() (int, bool) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil || set.Count() != 1 {
		return 0, false
	}
	for cpu := range len(set) * 64 { // IsSet is false past the set's end
		if set.IsSet(cpu) {
			return cpu, true
		}
	}
	return 0, false
}

// cpuJiffies reads one CPU's line of /proc/stat: the time it was busy
// (everything but idle and iowait) and its total.
func cpuJiffies(cpu int) (busy, total int64, ok bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	prefix := "cpu" + strconv.Itoa(cpu) + " "
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		rest, found := strings.CutPrefix(lines.Text(), prefix)
		if !found {
			continue
		}
		// user nice system idle iowait irq softirq steal ...
		for i, field := range strings.Fields(rest) {
			n, err := strconv.ParseInt(field, 10, 64)
			if err != nil {
				return 0, 0, false
			}
			if i >= 8 { // guest time is already counted in user
				break
			}
			total += n
			if i != 3 && i != 4 {
				busy += n
			}
		}
		return busy, total, total > 0
	}
	return 0, 0, false
}
