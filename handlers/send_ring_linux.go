package handlers

import (
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// sendRing sends to many sockets with one system call: a small io_uring
// that a writer goroutine fills with one send per connection, submits, and
// waits on until every send has completed. In the steady fan-out (1,000
// subscribers, one message at a time), one write(2) per connection paid a
// system call's entry and exit and a loopback softirq for every
// connection; a round of 64 sends per submission took a third less of the
// core for the same deliveries.
//
// Sends never wait: the sockets are non-blocking, and each send says
// MSG_DONTWAIT, so a full socket completes at once with EAGAIN and the
// caller hands the rest to the connection's blocking path. Nothing is in
// flight when sendAll returns, so the buffers are the caller's again.
//
// Only one goroutine uses a ring at a time.
type sendRing struct {
	fd      int
	ringMem []byte // the submission and completion rings, one mapping
	sqeMem  []byte // the submission entries

	sqTail  *uint32
	sqMask  uint32
	sqArray []uint32
	sqes    []ringSQE
	cqHead  *uint32
	cqTail  *uint32
	cqMask  uint32
	cqes    []ringCQE
	broken  bool // a submission failed: the ring is closed and sends fall back
}

// The kernel's io_uring ABI (include/uapi/linux/io_uring.h).
const (
	sysIOURingSetup = 425
	sysIOURingEnter = 426

	ioringOffSQRing = 0
	ioringOffSQEs   = 0x10000000

	ioringFeatSingleMmap = 1 << 0 // Linux 5.4
	ioringFeatNoDrop     = 1 << 1 // 5.5
	ioringFeatFastPoll   = 1 << 5 // 5.7, which also has IORING_OP_SEND (5.6)

	ioringEnterGetEvents = 1 << 0
	ioringOpSend         = 26
)

type ringSQOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type ringCQOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type ringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  ringSQOffsets
	cqOff                                                                  ringCQOffsets
}

type ringSQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	msgFlags    uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFDIn  int32
	addr3       uint64
	pad         uint64
}

type ringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// openSendRing makes a ring for rounds of up to entries sends. It fails on
// kernels before 5.7, and where io_uring is turned off or filtered out
// (the kernel.io_uring_disabled sysctl, a container's seccomp profile).
func openSendRing(entries uint32) (*sendRing, error) {
	var p ringParams
	fd, _, errno := syscall.RawSyscall(sysIOURingSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &sendRing{fd: int(fd)}
	const wanted = ioringFeatSingleMmap | ioringFeatNoDrop | ioringFeatFastPoll
	if p.features&wanted != wanted {
		syscall.Close(r.fd)
		return nil, errors.New("io_uring: the kernel is older than 5.7")
	}
	cqeSize := uint32(unsafe.Sizeof(ringCQE{}))
	ringSize := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*cqeSize)
	const prot, flags = syscall.PROT_READ | syscall.PROT_WRITE, syscall.MAP_SHARED | syscall.MAP_POPULATE
	var err error
	if r.ringMem, err = syscall.Mmap(r.fd, ioringOffSQRing, int(ringSize), prot, flags); err != nil {
		syscall.Close(r.fd)
		return nil, fmt.Errorf("io_uring: map the rings: %w", err)
	}
	if r.sqeMem, err = syscall.Mmap(r.fd, ioringOffSQEs, int(p.sqEntries)*int(unsafe.Sizeof(ringSQE{})), prot, flags); err != nil {
		syscall.Munmap(r.ringMem)
		syscall.Close(r.fd)
		return nil, fmt.Errorf("io_uring: map the entries: %w", err)
	}
	base := unsafe.Pointer(unsafe.SliceData(r.ringMem))
	r.sqTail = (*uint32)(unsafe.Add(base, p.sqOff.tail))
	r.sqMask = *(*uint32)(unsafe.Add(base, p.sqOff.ringMask))
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Add(base, p.sqOff.array)), p.sqEntries)
	r.sqes = unsafe.Slice((*ringSQE)(unsafe.Pointer(unsafe.SliceData(r.sqeMem))), p.sqEntries)
	r.cqHead = (*uint32)(unsafe.Add(base, p.cqOff.head))
	r.cqTail = (*uint32)(unsafe.Add(base, p.cqOff.tail))
	r.cqMask = *(*uint32)(unsafe.Add(base, p.cqOff.ringMask))
	r.cqes = unsafe.Slice((*ringCQE)(unsafe.Add(base, p.cqOff.cqes)), p.cqEntries)
	return r, nil
}

// close releases the ring. Nothing is in flight between calls to sendAll.
func (r *sendRing) close() {
	if r.fd < 0 {
		return
	}
	syscall.Munmap(r.sqeMem)
	syscall.Munmap(r.ringMem)
	syscall.Close(r.fd)
	r.fd = -1
}

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
	if len(fds) > len(r.sqes) { // the caller's bug; closed like any failure, so its callers' rule holds
		r.fail()
		return fmt.Errorf("io_uring: %d sends in a round of at most %d", len(fds), len(r.sqes))
	}
	n := uint32(len(fds))
	tail := atomic.LoadUint32(r.sqTail)
	for i := range n {
		idx := (tail + i) & r.sqMask
		r.sqes[idx] = ringSQE{
			opcode:   ioringOpSend,
			fd:       int32(fds[i]),
			addr:     uint64(uintptr(unsafe.Pointer(unsafe.SliceData(bufs[i])))),
			len:      uint32(len(bufs[i])),
			msgFlags: syscall.MSG_DONTWAIT | syscall.MSG_NOSIGNAL,
			userData: uint64(i),
		}
		r.sqArray[idx] = idx
		res[i] = -int32(syscall.EAGAIN) // until its completion says otherwise
	}
	atomic.StoreUint32(r.sqTail, tail+n) // publishes the entries to the kernel

	// One call submits what is left and waits for every send to complete;
	// a send on a non-blocking socket completes during the submission. A
	// partial submission returns without waiting, and a signal (Go's
	// preemption among them) ends the wait early: both go round again.
	submitted, completed := uint32(0), uint32(0)
	for completed < n {
		got, _, errno := syscall.Syscall6(sysIOURingEnter, uintptr(r.fd), uintptr(n-submitted), uintptr(n-completed), ioringEnterGetEvents, 0, 0)
		switch errno {
		case 0:
			if got == 0 && submitted < n {
				r.fail()
				return errors.New("io_uring_enter: the kernel took none of the entries")
			}
			submitted += uint32(got)
		case syscall.EINTR:
		default: // EAGAIN and EBUSY too: with at most a ring's worth in flight they mean trouble, not a moment's wait
			r.fail()
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
		completed += r.reap(res)
	}
	return nil
}

// reap records the completions waiting in the ring and returns how many.
func (r *sendRing) reap(res []int32) uint32 {
	head, tail := atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail)
	count := tail - head
	for ; head != tail; head++ {
		cqe := &r.cqes[head&r.cqMask]
		res[cqe.userData] = cqe.res
	}
	atomic.StoreUint32(r.cqHead, head)
	return count
}

// fail closes a ring that can no longer be trusted: closing cancels what
// the kernel had not yet carried out, so no later call can pick up a stale
// entry whose buffer has been reused.
func (r *sendRing) fail() {
	r.broken = true
	r.close()
}

var errRingBroken = errors.New("io_uring: the ring failed earlier and is closed")
