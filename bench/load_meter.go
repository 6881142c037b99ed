package bench

import "time"

// loadMeter measures how busy the load generator kept its CPU over a span.
// Pinned to one CPU on Linux, it reads that CPU's counters, which include
// the interrupts and softirqs the load causes there: on loopback, the
// kernel sends and processes each read's TCP acknowledgement in them, a
// fifth of the core or more in a fan-out, and the process's own CPU time
// leaves them out. Otherwise it uses the process's own CPU time, which can
// exceed one core's worth when the load runs on several.
type loadMeter struct {
	cpu                   int // -1 when not pinned to one CPU
	startBusy, startTotal int64
	startOwn              time.Duration
	start                 time.Time
}

func startLoadMeter() *loadMeter {
	m := &loadMeter{cpu: -1, start: time.Now(), startOwn: ownCPU()}
	if cpu, ok := pinnedCPU(); ok {
		if busy, total, ok := cpuJiffies(cpu); ok {
			m.cpu, m.startBusy, m.startTotal = cpu, busy, total
		}
	}
	return m
}

// busy is the share of a core used since the meter started.
func (m *loadMeter) busy() float64 {
	if m.cpu >= 0 {
		if busy, total, ok := cpuJiffies(m.cpu); ok && total > m.startTotal {
			return float64(busy-m.startBusy) / float64(total-m.startTotal)
		}
	}
	return (ownCPU() - m.startOwn).Seconds() / time.Since(m.start).Seconds()
}
