package uring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// Ring is one io_uring instance.
type Ring struct {
	fd      int
	ringMem []byte // the submission and completion rings, one mapping
	sqeMem  []byte // the submission entries

	sqTail  *uint32
	sqMask  uint32
	sqArray []uint32
	sqes    []SQE
	cqHead  *uint32
	cqTail  *uint32
	cqMask  uint32
	cqes    []CQE
}

// The kernel's numbers.
const (
	sysSetup = 425
	sysEnter = 426

	offSQRing = 0
	offSQEs   = 0x10000000

	featSingleMmap = 1 << 0 // Linux 5.4
	featNoDrop     = 1 << 1 // 5.5
	featFastPoll   = 1 << 5 // 5.7, which also has OpSend (5.6)

	enterGetEvents = 1 << 0
	OpSend         = 26
)

type sqOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqOffsets
	cqOff                                                                  cqOffsets
}

// SQE is a submission entry, io_uring_sqe.
type SQE struct {
	Opcode      uint8
	Flags       uint8
	Ioprio      uint16
	FD          int32
	Off         uint64
	Addr        uint64
	Len         uint32
	OpFlags     uint32 // msg_flags of a send
	UserData    uint64
	BufIndex    uint16
	Personality uint16
	SpliceFDIn  int32
	Addr3       uint64
	pad         uint64
}

// CQE is a completion, io_uring_cqe: Res is the operation's result, or a
// negated errno.
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// Open makes a ring of at least entries entries. It fails on kernels
// before 5.7, and where io_uring is turned off or filtered out (the
// kernel.io_uring_disabled sysctl, a container's seccomp profile).
func Open(entries uint32) (*Ring, error) {
	var p params
	fd, _, errno := syscall.RawSyscall(sysSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &Ring{fd: int(fd)}
	const wanted = featSingleMmap | featNoDrop | featFastPoll
	if p.features&wanted != wanted {
		syscall.Close(r.fd)
		return nil, errors.New("io_uring: the kernel is older than 5.7")
	}
	cqeSize := uint32(unsafe.Sizeof(CQE{}))
	ringSize := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*cqeSize)
	const prot, flags = syscall.PROT_READ | syscall.PROT_WRITE, syscall.MAP_SHARED | syscall.MAP_POPULATE
	var err error
	if r.ringMem, err = syscall.Mmap(r.fd, offSQRing, int(ringSize), prot, flags); err != nil {
		syscall.Close(r.fd)
		return nil, fmt.Errorf("io_uring: map the rings: %w", err)
	}
	if r.sqeMem, err = syscall.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(SQE{})), prot, flags); err != nil {
		syscall.Munmap(r.ringMem)
		syscall.Close(r.fd)
		return nil, fmt.Errorf("io_uring: map the entries: %w", err)
	}
	base := unsafe.Pointer(unsafe.SliceData(r.ringMem))
	r.sqTail = (*uint32)(unsafe.Add(base, p.sqOff.tail))
	r.sqMask = *(*uint32)(unsafe.Add(base, p.sqOff.ringMask))
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Add(base, p.sqOff.array)), p.sqEntries)
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(unsafe.SliceData(r.sqeMem))), p.sqEntries)
	r.cqHead = (*uint32)(unsafe.Add(base, p.cqOff.head))
	r.cqTail = (*uint32)(unsafe.Add(base, p.cqOff.tail))
	r.cqMask = *(*uint32)(unsafe.Add(base, p.cqOff.ringMask))
	r.cqes = unsafe.Slice((*CQE)(unsafe.Add(base, p.cqOff.cqes)), p.cqEntries)
	return r, nil
}

// Entries is how many entries one submission can hold.
func (r *Ring) Entries() int { return len(r.sqes) }

// FD is the ring's descriptor, for tests that make the ring fail.
func (r *Ring) FD() int { return r.fd }

// Closed reports whether Close was called.
func (r *Ring) Closed() bool { return r.fd < 0 }

// Close releases the ring; the kernel cancels what it had not yet carried
// out, so no later submission can pick up a stale entry.
func (r *Ring) Close() {
	if r.fd < 0 {
		return
	}
	syscall.Munmap(r.sqeMem)
	syscall.Munmap(r.ringMem)
	syscall.Close(r.fd)
	r.fd = -1
}

// Queue places entries at the tail of the submission ring and publishes
// them to the kernel; Enter submits them. The caller queues at most
// Entries() between submissions.
func (r *Ring) Queue(entries ...SQE) {
	tail := atomic.LoadUint32(r.sqTail)
	for i, e := range entries {
		idx := (tail + uint32(i)) & r.sqMask
		r.sqes[idx] = e
		r.sqArray[idx] = idx
	}
	atomic.StoreUint32(r.sqTail, tail+uint32(len(entries)))
}

// Enter submits up to submit queued entries and, if wait is above zero,
// waits until that many completions are ready. It returns how many entries
// the kernel took. A signal can end the wait early (EINTR).
func (r *Ring) Enter(submit, wait uint32) (uint32, error) {
	flags := uintptr(0)
	if wait > 0 {
		flags = enterGetEvents
	}
	got, _, errno := syscall.Syscall6(sysEnter, uintptr(r.fd), uintptr(submit), uintptr(wait), flags, 0, 0)
	if errno != 0 {
		return 0, fmt.Errorf("io_uring_enter: %w", errno)
	}
	return uint32(got), nil
}

// Reap calls f with each completion that is ready and returns how many
// there were.
func (r *Ring) Reap(f func(CQE)) uint32 {
	head, tail := atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail)
	count := tail - head
	for ; head != tail; head++ {
		f(r.cqes[head&r.cqMask])
	}
	atomic.StoreUint32(r.cqHead, head)
	return count
}
