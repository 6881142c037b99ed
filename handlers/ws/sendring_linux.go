package ws

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"herald/app/uring"
)

// sendRing sends to many sockets with one system call: a small io_uring
// that a writer goroutine fills with one send per connection, submits, and
// waits on until every send has completed. One write(2) per connection
// pays a system call's entry and exit, and a loopback softirq, for every
// connection; a round of sends per submission pays them once per round
// (bench/PERFORMANCE.md has what that saved).
//
// Sends never wait: the sockets are non-blocking, and each send says
// MSG_DONTWAIT, so a full socket completes at once with EAGAIN and the
// caller hands the rest to the connection's blocking path. Nothing is in
// flight when sendAll returns, so the buffers are the caller's again.
//
// Only one goroutine uses a ring at a time.
type sendRing struct {
	ring   *uring.Ring
	broken bool // a submission failed: the ring is closed and sends fall back
}

// openSendRing makes a ring for rounds of up to entries sends.
func openSendRing(entries uint32) (*sendRing, error) {
	ring, err := uring.Open(entries)
	if err != nil {
		return nil, err
	}
	return &sendRing{ring: ring}, nil
}

// close releases the ring. Nothing is in flight between calls to sendAll.
func (r *sendRing) close() { r.ring.Close() }

// sendAll sends bufs[i] to socket fds[i], for every i, and sets res[i] to
// the bytes sent or to the negated errno. len(fds) is at most the ring's
// entries. If the ring itself fails, it closes and later calls report
// errRingBroken; each send whose completion it did not see keeps -EAGAIN,
// which sends it the blocking way, and the caller must not reuse bufs,
// which the kernel may not be done with.
func (r *sendRing) sendAll(fds []int, bufs [][]byte, res []int32) error {
	if r.broken {
		return errRingBroken
	}
	if len(fds) > r.ring.Entries() { // the caller's bug; closed like any failure, so its callers' rule holds
		r.fail()
		return fmt.Errorf("io_uring: %d sends in a round of at most %d", len(fds), r.ring.Entries())
	}
	n := uint32(len(fds))
	for i := range n {
		r.ring.Queue(uring.SQE{
			Opcode:   uring.OpSend,
			FD:       int32(fds[i]),
			Addr:     uint64(uintptr(unsafe.Pointer(unsafe.SliceData(bufs[i])))),
			Len:      uint32(len(bufs[i])),
			OpFlags:  syscall.MSG_DONTWAIT | syscall.MSG_NOSIGNAL,
			UserData: uint64(i),
		})
		res[i] = -int32(syscall.EAGAIN) // until its completion says otherwise
	}

	// One call submits what is left and waits for every send to complete;
	// a send on a non-blocking socket completes during the submission. A
	// partial submission returns without waiting, and a signal (Go's
	// preemption among them) ends the wait early: both go round again.
	submitted, completed := uint32(0), uint32(0)
	for completed < n {
		got, err := r.ring.Enter(n-submitted, n-completed)
		completed += r.ring.Reap(func(c uring.CQE) { res[c.UserData] = c.Res })
		// Reaped before failing: a send the kernel carried out must not be
		// left at -EAGAIN, or the blocking path would send its bytes again.
		switch {
		case err == nil:
			if got == 0 && submitted < n {
				r.fail()
				return errors.New("io_uring_enter: the kernel took none of the entries")
			}
			submitted += got
		case errors.Is(err, syscall.EINTR):
		default: // EAGAIN and EBUSY too: with at most a ring's worth in flight they mean trouble, not a moment's wait
			r.fail()
			return err
		}
	}
	return nil
}

// fail closes a ring that can no longer be trusted: closing cancels what
// the kernel had not yet carried out, so no later call can pick up a stale
// entry whose buffer has been reused.
func (r *sendRing) fail() {
	r.broken = true
	r.close()
}

var errRingBroken = errors.New("io_uring: the ring failed earlier and is closed")
