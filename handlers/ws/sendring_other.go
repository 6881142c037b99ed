//go:build !linux

package ws

import "errors"

// sendRing is Linux's io_uring; elsewhere every connection gets a write of
// its own.
type sendRing struct{ broken bool }

func openSendRing(uint32) (*sendRing, error) {
	return nil, errors.New("io_uring is only on Linux")
}

func (*sendRing) close() {}

func (*sendRing) sendAll([]int, [][]byte, []int32) error { return errRingBroken }

var errRingBroken = errors.New("io_uring is only on Linux")
