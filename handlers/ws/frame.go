package ws

import (
	"encoding/binary"
	"unsafe"

	"herald/app"
)

// WebSocket opcodes that the writer sends (RFC 6455, section 5.2).
const (
	opText = 0x1
	opPing = 0x9
)

// appendFrame appends one unfragmented, unmasked server frame. Encoding
// frames here, instead of through x/net's Conn.Write, lets one write carry
// a whole batch: x/net flushes after every frame.
func appendFrame(buf []byte, opcode byte, payload []byte) []byte {
	buf = append(buf, 0x80|opcode) // FIN
	switch n := len(payload); {
	case n < 126:
		buf = append(buf, byte(n))
	case n <= 0xFFFF:
		buf = append(buf, 126)
		buf = binary.BigEndian.AppendUint16(buf, uint16(n))
	default:
		buf = append(buf, 127)
		buf = binary.BigEndian.AppendUint64(buf, uint64(n))
	}
	return append(buf, payload...)
}

// batchWriter is what a goroutine brings to a connection it writes to: a
// buffer to build batches in, made once per goroutine so that a write
// allocates nothing. The writer pool's shards each keep one; goroutines
// that write rarely make their own.
type batchWriter struct {
	buf []byte
}

func newBatchWriter() *batchWriter { return &batchWriter{buf: make([]byte, 0, 4<<10)} }

// keep holds on to buf, which may have grown, for the next batch, unless
// one huge message made it too big to keep.
func (w *batchWriter) keep(buf []byte) {
	if cap(buf) <= 4*app.DeliveryBytes {
		w.buf = buf[:0]
	}
}

// textBytes views a message's text as bytes without copying it once per
// subscriber. The writers it is passed to only read it.
func textBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
