package app

import (
	"sync/atomic"
	"time"
)

// LatencyBounds are the upper bounds, in seconds, of the buckets that
// delivery latency is counted in: from 100 µs, each four times the last,
// to about 26 s.
var LatencyBounds = [...]float64{0.0001, 0.0004, 0.0016, 0.0064, 0.0256, 0.1024, 0.4096, 1.6384, 6.5536, 26.2144}

// latencyHistogram counts how long live messages took from being published
// to being written to a subscriber. Writers on every core add to it, so it
// is only atomics.
type latencyHistogram struct {
	buckets  [len(LatencyBounds) + 1]atomic.Uint64 // the last: above every bound
	sumNanos atomic.Uint64
}

func (l *latencyHistogram) observe(d time.Duration) {
	seconds := d.Seconds()
	i := 0
	for i < len(LatencyBounds) && seconds > LatencyBounds[i] {
		i++
	}
	l.buckets[i].Add(1)
	l.sumNanos.Add(uint64(max(d, 0)))
}

// LatencyStats is a snapshot of the delivery latency histogram.
type LatencyStats struct {
	// Cumulative[i] counts the deliveries that took at most
	// LatencyBounds[i]; Count counts them all, and Sum adds up their
	// seconds.
	Cumulative [len(LatencyBounds)]uint64
	Count      uint64
	Sum        float64
}

func (l *latencyHistogram) snapshot() LatencyStats {
	var s LatencyStats
	for i := range l.buckets {
		s.Count += l.buckets[i].Load()
		if i < len(LatencyBounds) {
			s.Cumulative[i] = s.Count
		}
	}
	s.Sum = float64(l.sumNanos.Load()) / float64(time.Second)
	return s
}
