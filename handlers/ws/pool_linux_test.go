package ws

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// threadWrites is how many write(2) calls this thread has made, and how
// many bytes they wrote, as the kernel counts them in
// /proc/thread-self/io. The caller has locked its goroutine to its thread.
func threadWrites(t *testing.T) (calls, bytes int64) {
	t.Helper()
	data, err := os.ReadFile("/proc/thread-self/io")
	if err != nil {
		t.Fatal(err)
	}
	calls, bytes = -1, -1
	for line := range strings.Lines(string(data)) {
		name, value, _ := strings.Cut(strings.TrimSpace(line), ": ")
		switch name {
		case "syscw":
			calls, _ = strconv.ParseInt(value, 10, 64)
		case "wchar":
			bytes, _ = strconv.ParseInt(value, 10, 64)
		}
	}
	if calls < 0 || bytes < 0 {
		t.Fatalf("no syscw or wchar in /proc/thread-self/io:\n%s", data)
	}
	return calls, bytes
}

// Messages that wait while the writer is away go out together: when the
// shard gets to the connection, one write carries all of them.
func TestOneWriteCarriesEveryMessageThatWaits(t *testing.T) {
	t.Parallel()
	s := startWebSocketServerWith(t, quietConfig(), serveOptions{shardless: true})
	conn, frames := dialRaw(t, s, 0, 0)
	pingPong(t, conn, frames, "started")
	s.quiesce(t, s.connOf(t, conn.LocalAddr()))
	shard := s.engine.pool.shards[0]

	const waiting = 20
	var texts []string
	var frameBytes int64
	for i := range waiting {
		text := fmt.Sprint("waiting ", i)
		if _, _, err := s.hub.Publish("default", text); err != nil {
			t.Fatal(err)
		}
		texts = append(texts, text)
		frameBytes += int64(len(appendFrame(nil, opText, []byte(text))))
	}
	batch := shard.take()
	if len(batch) != 1 {
		t.Fatalf("the connection is queued %d times for %d messages, want once", len(batch), waiting)
	}

	// The test is the shard's goroutine, on a thread of its own while it
	// writes, so that the kernel counts its writes alone.
	runtime.LockOSThread()
	callsBefore, bytesBefore := threadWrites(t)
	writeEach(batch, newBatchWriter())
	callsAfter, bytesAfter := threadWrites(t)
	runtime.UnlockOSThread()

	if calls := callsAfter - callsBefore; calls != 1 {
		t.Errorf("%d messages took %d writes, want one", waiting, calls)
	}
	if written := bytesAfter - bytesBefore; written != frameBytes {
		t.Errorf("the writes carried %d bytes, want the %d of the messages' frames", written, frameBytes)
	}
	expectTexts(t, frames, texts...)
}
