//go:build !unix

package bench

import "time"

// ownCPU is not measured here, so load_cpu_busy reads 0.
func ownCPU() time.Duration { return 0 }
