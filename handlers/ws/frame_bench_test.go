package ws

import (
	"strings"
	"testing"
	"time"

	"herald/app"
)

// BenchmarkFrameEncoding is the writer's work for one batch of 16 messages
// of 64 bytes: text frames appended to a reused buffer.
func BenchmarkFrameEncoding(b *testing.B) {
	messages, buf := benchBatch(), make([]byte, 0, 4<<10)
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for _, m := range messages {
			buf = appendFrame(buf, opText, textBytes(m.Text))
		}
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkJSONFrameEncoding is the same batch in JSON mode, where each
// message's JSON is built once and shared.
func BenchmarkJSONFrameEncoding(b *testing.B) {
	messages, buf := benchBatch(), make([]byte, 0, 4<<10)
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for _, m := range messages {
			buf = appendFrame(buf, opText, m.JSON())
		}
	}
	b.SetBytes(int64(len(buf)))
}

// benchBatch is what a writer takes in one go under load: 16 messages of
// 64 bytes.
func benchBatch() []*app.Message {
	messages := make([]*app.Message, 16)
	for i := range messages {
		messages[i] = &app.Message{ID: uint64(i), Topic: "bench", Time: time.Now(), Text: strings.Repeat("x", 64)}
	}
	return messages
}
