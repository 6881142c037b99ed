//go:build !linux

package readiness

import (
	"errors"
	"syscall"
)

// Poller is not available here: Watch always fails.
type Poller struct{}

// Watch reports errors.ErrUnsupported: read the connection on a goroutine.
func (p *Poller) Watch(key uint64, conn syscall.RawConn, w Watcher) error {
	return errors.ErrUnsupported
}

// Forget does nothing.
func (p *Poller) Forget(key uint64) {}
