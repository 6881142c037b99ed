// Package uring is the part of Linux's io_uring that Herald uses, written
// against the kernel's ABI (include/uapi/linux/io_uring.h) with no
// dependency: a ring to queue entries on, submit, and reap completions from.
// The WebSocket writers send a round of connections with one submission.
// A Ring is used by one goroutine at a time. It exists only on Linux.
package uring
