//go:build !linux

package bench

// pinnedCPU and cpuJiffies read Linux's affinity and /proc/stat; elsewhere
// the load meter uses the process's own CPU time.
func pinnedCPU() (int, bool) { return 0, false }

func cpuJiffies(int) (busy, total int64, ok bool) { return 0, 0, false }
