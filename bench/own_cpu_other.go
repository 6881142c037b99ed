//go:build !unix

package bench

import "time"

// ownCPU is not measured here; the report's load_cpu_busy stays 0.
func ownCPU() time.Duration { return 0 }
