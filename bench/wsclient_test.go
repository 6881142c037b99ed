package bench

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParseFrameWaitsForWholeFramesAndRefusesBadOnes(t *testing.T) {
	long := make([]byte, 300)
	frame16 := append([]byte{0x81, 126, 0x01, 0x2C}, long...)
	frame64 := append([]byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0x01, 0x2C}, long...)
	for name, b := range map[string][]byte{"16-bit length": frame16, "64-bit length": frame64} {
		for cut := range len(b) {
			if _, size, err := parseFrame(b[:cut]); size != 0 || err != nil {
				t.Fatalf("%s cut at %d: size %d, %v; want a wait for the rest", name, cut, size, err)
			}
		}
		f, size, err := parseFrame(append(b, 0x81, 0))
		if err != nil || size != len(b) || len(f.payload) != 300 || !f.fin {
			t.Errorf("%s: size %d of %d, payload %d bytes, fin %v, %v", name, size, len(b), len(f.payload), f.fin, err)
		}
	}
	if _, _, err := parseFrame([]byte{0x81, 0x85, 1, 2, 3, 4, 'h', 'e', 'l', 'l', 'o'}); err == nil {
		t.Error("a masked server frame was taken")
	}
	if _, _, err := parseFrame([]byte{0x81, 127, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}); err == nil {
		t.Error("a frame of 2^63 bytes was waited for")
	}
}

// fakeServer accepts one WebSocket connection and hands it to serve after
// its 101 reply, which carries early (the start of the first frame) in the
// same write.
func fakeServer(t *testing.T, early []byte, serve func(conn net.Conn, r *bufio.Reader)) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Close() })
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		conn, err := listener.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		// Only a guard, so that a load generator that never answers
		// fails the test instead of hanging it.
		conn.SetDeadline(time.Now().Add(time.Minute))
		r := bufio.NewReader(conn)
		req, err := http.ReadRequest(r)
		if err != nil {
			t.Error(err)
			return
		}
		sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + handshakeGUID))
		reply := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"sec-websocket-accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
		if _, err := conn.Write(append([]byte(reply), early...)); err != nil {
			t.Error(err)
			return
		}
		serve(conn, r)
	}()
	return "ws://" + listener.Addr().String() + "/ws?topic=a"
}

// The load generator answers pings with masked pongs, reassembles a
// fragmented message, takes a frame that came with the handshake's reply,
// and on Linux has the kernel's arrival time for each: read on its own, and
// in a poll group.
func TestSubscriberAnswersPingsAndReadsEveryFrameShape(t *testing.T) {
	awaitKernelTimestamps(t)
	t.Run("alone", func(t *testing.T) {
		testFrameShapes(t, func(s *subscriber) { s.read() })
	})
	t.Run("in a poll group", func(t *testing.T) {
		testFrameShapes(t, func(s *subscriber) {
			r := startReading([]*subscriber{s})
			if polled := len(r.groups) == 1 && len(r.alone) == 0; polled != (runtime.GOOS == "linux") {
				t.Errorf("in a poll group: %v on %s", polled, runtime.GOOS)
			}
			<-r.done
		})
	})
}

func testFrameShapes(t *testing.T, read func(s *subscriber)) {
	sent := time.Now()
	first, second := encodePayload(0, sent, 64), encodePayload(1, sent, 64)
	pong := make(chan []byte, 1)
	url := fakeServer(t, append([]byte{0x81, byte(len(first))}, first...), func(conn net.Conn, r *bufio.Reader) {
		conn.Write([]byte{0x89, 2, 'h', 'i'}) // a ping
		head := make([]byte, 6)
		if _, err := io.ReadFull(r, head); err != nil {
			t.Error(err)
			return
		}
		payload := make([]byte, head[1]&0x7F)
		io.ReadFull(r, payload)
		for i := range payload {
			payload[i] ^= head[2+i%4]
		}
		if head[0] != 0x8A || head[1]&0x80 == 0 {
			t.Errorf("the pong's header is % x, want a masked pong", head[:2])
		}
		pong <- payload
		// The second message in two fragments, then a close.
		conn.Write(append([]byte{0x01, 20}, second[:20]...))
		conn.Write(append([]byte{0x80, byte(len(second) - 20)}, second[20:]...))
		conn.Write([]byte{0x88, 0})
	})
	s := dialSubscriber(t, url, 3)
	read(s) // returns at the close, having seen 2 of 3
	if !errors.Is(s.err, errClosed) {
		t.Errorf("reading ended with %v, want the server's close", s.err)
	}
	if got := string(<-pong); got != "hi" {
		t.Errorf("the pong carries %q, want the ping's %q", got, "hi")
	}
	for seq := range 2 {
		read, arrived, seen := s.latencyOf(seq)
		if !seen || arrived > read {
			t.Errorf("message %d: seen %v, read after %d µs, arrived after %d µs", seq, seen, read, arrived)
		}
	}
	if s.distinct != 2 || s.dupes != 0 || s.foreign != 0 {
		t.Errorf("distinct %d, dupes %d, foreign %d; want 2, 0, 0", s.distinct, s.dupes, s.foreign)
	}
	// The first message came before the first read, so only the second
	// has the kernel's time; the subscriber still says whether all did.
	if s.kernel != (runtime.GOOS == "linux") {
		t.Errorf("kernel arrival times: %v on %s", s.kernel, runtime.GOOS)
	}
}

// Stopping the readers ends those still waiting without blaming them, and
// closes their sockets.
func TestStopEndsReadingWithoutAnError(t *testing.T) {
	url, closed := quietServer(t, nil)
	s := dialSubscriber(t, url, 1)
	r := startReading([]*subscriber{s})
	r.stop()
	if err := <-closed; !errors.Is(err, io.EOF) {
		t.Errorf("the server read %v after the stop, want EOF", err)
	}
	if s.err != nil || s.distinct != 0 {
		t.Errorf("after the stop: err %v, %d messages; want no error and none", s.err, s.distinct)
	}
}

// quietServer is a fake server that sends frames after its handshake and
// then waits, reading, until the load generator closes the connection;
// closed receives that read's error.
func quietServer(t *testing.T, frames []byte) (url string, closed <-chan error) {
	t.Helper()
	readErr := make(chan error, 1)
	url = fakeServer(t, nil, func(conn net.Conn, r *bufio.Reader) {
		if len(frames) > 0 {
			conn.Write(frames)
		}
		_, err := r.ReadByte()
		readErr <- err
	})
	return url, readErr
}

// dialSubscriber connects a subscriber to url that expects messages, all
// on its one topic.
func dialSubscriber(t *testing.T, url string, messages int) *subscriber {
	t.Helper()
	conn, early, err := wsDial(t.Context(), url, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return newSubscriber(conn, early, messages, 0, 1)
}

func TestDialSaysWhyTheServerRefused(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no token", http.StatusUnauthorized)
	})}
	go server.Serve(listener)
	defer server.Close()
	_, _, err = wsDial(t.Context(), "ws://"+listener.Addr().String()+"/ws", 10*time.Second)
	if !errors.Is(err, ErrNotUpgraded) || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("dial against a 401: %v, want ErrNotUpgraded saying HTTP 401", err)
	}
}
