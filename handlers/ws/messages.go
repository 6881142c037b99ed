package ws

import (
	"io"
	"unicode/utf8"

	"golang.org/x/net/websocket"
)

// messageChecker follows the data frames a subscriber sends and checks
// what x/net lets through: fragments must continue a message that was
// started, a whole message must fit in the frame limit however it is cut
// into fragments, and a text message must be valid UTF-8 once assembled.
// It holds the bytes of a text message only while that message arrives,
// and never more than the limit.
type messageChecker struct {
	limit int

	inMessage bool // a message has started and its final fragment has not come
	isText    bool
	size      int
	text      []byte
}

// frame reads one data frame's payload, all of it whatever the outcome so
// that the next frame starts where it should, and returns the close it
// calls for, if any. fin is the frame's FIN bit and n its payload length.
func (m *messageChecker) frame(opcode byte, fin bool, n int, payload io.Reader) (*closeRequest, error) {
	request, err := m.check(opcode, fin, n, payload)
	if _, discardErr := io.Copy(io.Discard, payload); err == nil {
		err = discardErr
	}
	return request, err
}

func (m *messageChecker) check(opcode byte, fin bool, n int, payload io.Reader) (*closeRequest, error) {
	switch opcode {
	case websocket.TextFrame, websocket.BinaryFrame:
		if m.inMessage {
			return &closeRequest{closeProtocolError, "a new message began before the last one's final fragment"}, nil
		}
		m.inMessage, m.isText, m.size, m.text = true, opcode == websocket.TextFrame, 0, m.text[:0]
	case websocket.ContinuationFrame:
		if !m.inMessage {
			return &closeRequest{closeProtocolError, "a continuation frame with no message to continue"}, nil
		}
	}
	m.size += n
	if m.size > m.limit {
		m.reset()
		return &closeRequest{closeMessageTooBig, "a message, assembled from its fragments, is over limits.max_frame_bytes"}, nil
	}
	if m.isText {
		var err error
		if m.text, err = appendAll(m.text, payload, n); err != nil {
			return nil, err
		}
	}
	if !fin {
		return nil, nil
	}
	valid := !m.isText || utf8.Valid(m.text)
	m.reset()
	if !valid {
		return &closeRequest{closeInvalidPayload, "a text message that is not valid UTF-8"}, nil
	}
	return nil, nil
}

func (m *messageChecker) reset() {
	m.inMessage, m.size = false, 0
	if cap(m.text) > 4<<10 {
		m.text = nil // a large message's buffer is not kept for the life of the connection
	}
	m.text = m.text[:0]
}

// appendAll appends the n bytes of r to buf.
func appendAll(buf []byte, r io.Reader, n int) ([]byte, error) {
	start := len(buf)
	buf = append(buf, make([]byte, n)...)
	_, err := io.ReadFull(r, buf[start:])
	return buf, err
}

// frameFirstByte is the first byte of a frame's header (FIN, the three
// reserved bits and the opcode), which x/net keeps until HandleFrame
// consumes it. x/net parses FIN and the reserved bits but never acts on
// them.
func frameFirstByte(frame interface{ HeaderReader() io.Reader }) byte {
	header, ok := frame.HeaderReader().(interface{ Bytes() []byte })
	if !ok || len(header.Bytes()) == 0 {
		return 0x80 // as if final, with no reserved bits
	}
	return header.Bytes()[0]
}

// headerProblem explains what is wrong with a frame's header, or returns
// "": reserved bits that no extension was agreed for, or a control frame
// that is fragmented or longer than 125 bytes (RFC 6455, section 5.5).
func headerProblem(first, opcode byte, n int) string {
	switch {
	case first&0x70 != 0:
		return "a frame has reserved bits set, and no extension was agreed"
	case opcode >= websocket.CloseFrame && (first&0x80 == 0 || n > 125):
		return "a control frame is fragmented or over 125 bytes"
	}
	return ""
}
