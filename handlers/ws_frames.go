package handlers

import (
	"encoding/binary"
	"sync"

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

// batchBuffers lends the buffers that batches are built in. A connection
// holds one only while it writes, so idle connections cost no buffer.
type batchBuffers struct{ pool sync.Pool }

func (b *batchBuffers) get() []byte {
	if p, ok := b.pool.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, 4<<10)
}

func (b *batchBuffers) put(buf []byte) {
	if cap(buf) > 4*maxBatchBytes {
		return // one huge message: let it go rather than keep it
	}
	b.pool.Put(&buf)
}

// wsTransport batches frames for one WebSocket connection. x/net's own
// writes (pong and close replies from the reader) go to the same
// connection; each write, ours or x/net's, is one call on the connection,
// which the kernel socket never interleaves.
type wsTransport struct {
	conn    *deadlineConn
	json    bool
	buffers *batchBuffers
	buf     []byte // nil between flushes
}

var _ transport = (*wsTransport)(nil)

func (w *wsTransport) addMessage(m *app.Message) {
	payload := textBytes(m.Text)
	if w.json {
		payload = m.JSON()
	}
	w.add(opText, payload)
}

// addNotice skips notices in text mode, where every frame is a message.
func (w *wsTransport) addNotice(_ string, data []byte) {
	if w.json {
		w.add(opText, data)
	}
}

func (w *wsTransport) addKeepalive() { w.add(opPing, nil) }

func (w *wsTransport) add(opcode byte, payload []byte) {
	if w.buf == nil {
		w.buf = w.buffers.get()
	}
	w.buf = appendFrame(w.buf, opcode, payload)
}

func (w *wsTransport) pending() bool { return len(w.buf) > 0 }

func (w *wsTransport) flush() error {
	_, err := w.conn.Write(w.buf)
	w.buffers.put(w.buf)
	w.buf = nil
	return err
}
