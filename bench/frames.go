package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
)

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxFrame bounds one frame's payload, so that a bad length cannot make the
// load generator allocate without end.
const maxFrame = 16 << 20

var errClosed = errors.New("the server closed the WebSocket")

// frame is one parsed server frame; payload aliases the read buffer.
type frame struct {
	fin     bool
	opcode  byte
	payload []byte
}

// parseFrame takes the first frame from b. It returns size 0 while b holds
// only part of one. Server frames are never masked (RFC 6455 section 5.1).
func parseFrame(b []byte) (f frame, size int, err error) {
	if len(b) < 2 {
		return frame{}, 0, nil
	}
	if b[1]&0x80 != 0 {
		return frame{}, 0, errors.New("the server sent a masked frame")
	}
	f.fin = b[0]&0x80 != 0
	f.opcode = b[0] & 0x0F
	header := 2
	length := uint64(b[1] & 0x7F)
	switch length {
	case 126:
		header = 4
		if len(b) < header {
			return frame{}, 0, nil
		}
		length = uint64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		header = 10
		if len(b) < header {
			return frame{}, 0, nil
		}
		length = binary.BigEndian.Uint64(b[2:10])
	}
	if length > maxFrame {
		return frame{}, 0, fmt.Errorf("the server sent a frame of %d bytes, more than %d", length, maxFrame)
	}
	size = header + int(length)
	if len(b) < size {
		return frame{}, 0, nil
	}
	f.payload = b[header:size]
	return f, size, nil
}

// pongFrame is the masked pong a client answers a ping with.
func pongFrame(ping []byte) []byte {
	out := make([]byte, 0, 6+len(ping))
	out = append(out, 0x80|opPong, 0x80|byte(len(ping))) // a ping's payload is at most 125 bytes
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	out = append(out, mask[:]...)
	for i, c := range ping {
		out = append(out, c^mask[i%4])
	}
	return out
}
