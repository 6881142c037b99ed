//go:build !linux

package app

import (
	"errors"
	"os"
)

// journalRing is Linux's io_uring; elsewhere the journal writes and syncs
// with system calls.
type journalRing struct{ broken bool }

func openJournalRing() (*journalRing, error) { return nil, errors.New("io_uring is only on Linux") }

func (*journalRing) close() {}

func (*journalRing) writeAndSync(*os.File, []byte, int64) error { return errors.ErrUnsupported }
