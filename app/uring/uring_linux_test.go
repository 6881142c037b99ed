package uring

import (
	"testing"
	"unsafe"
)

// The ring's structs are the kernel's, byte for byte
// (include/uapi/linux/io_uring.h).
func TestStructsMatchTheKernelsLayout(t *testing.T) {
	var sqe SQE
	var p params
	for _, c := range []struct {
		what      string
		got, want uintptr
	}{
		{"sizeof(io_uring_sqe)", unsafe.Sizeof(sqe), 64},
		{"io_uring_sqe.fd", unsafe.Offsetof(sqe.FD), 4},
		{"io_uring_sqe.off", unsafe.Offsetof(sqe.Off), 8},
		{"io_uring_sqe.addr", unsafe.Offsetof(sqe.Addr), 16},
		{"io_uring_sqe.len", unsafe.Offsetof(sqe.Len), 24},
		{"io_uring_sqe.msg_flags", unsafe.Offsetof(sqe.OpFlags), 28},
		{"io_uring_sqe.user_data", unsafe.Offsetof(sqe.UserData), 32},
		{"sizeof(io_uring_cqe)", unsafe.Sizeof(CQE{}), 16},
		{"sizeof(io_uring_params)", unsafe.Sizeof(p), 120},
		{"io_uring_params.sq_off", unsafe.Offsetof(p.sqOff), 40},
		{"io_uring_params.cq_off", unsafe.Offsetof(p.cqOff), 80},
	} {
		if c.got != c.want {
			t.Errorf("%s is %d, want %d", c.what, c.got, c.want)
		}
	}
}
