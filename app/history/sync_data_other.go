//go:build !linux

package history

import "os"

// syncData waits until f's data is on disk.
func syncData(f *os.File) error { return f.Sync() }
