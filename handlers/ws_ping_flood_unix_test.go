//go:build unix

package handlers

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	"herald/app"
)

// pendingControlBytes is how many bytes of x/net's control frames wait to
// go out on c: a pong at most, since a close is only a code.
func (c *wsConn) pendingControlBytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pong)
}

// A client that sends pings and never reads makes the server answer each
// one while the socket to it is full. The server keeps the latest pong
// only, tells the client to stop with 1008 once it goes on, and everyone
// else goes on getting every message.
func TestPingFloodFromAClientThatNeverReadsHoldsOnePongThenGets1008(t *testing.T) {
	t.Parallel()
	cfg := app.DefaultConfig()
	// Nothing but the flood rule may end the flooder: not a write timeout,
	// and no pings of the server's own among the pongs.
	cfg.WebSocket.WriteTimeout = time.Hour
	cfg.WebSocket.PingInterval = time.Hour
	// Small buffers on both sides: the socket to the flooder is full after
	// a few dozen KiB, and what the kernel holds of the flood is bounded.
	const socketBytes = 16 << 10
	s := startWebSocketServer(t, cfg, socketBytes)

	healthy, _, err := gorilla.DefaultDialer.Dial(s.url(""), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer healthy.Close()
	healthy.SetReadDeadline(time.Now().Add(hangGuard))

	flooder, frames := dialRaw(t, s, socketBytes, 4<<10)
	if _, err := flooder.Write(maskedFrame(opPing, []byte("hello"))); err != nil {
		t.Fatal(err)
	}
	if f, err := readServerFrame(frames); err != nil || f.opcode != 0xA {
		t.Fatalf("first ping: got %+v, %v, want a pong", f, err)
	}
	conn := s.connOf(t, flooder.LocalAddr())

	// Far more than the kernel's buffers on both sides can hold, so that
	// most of it is read by the server while the socket to the flooder is
	// full; the flood rule allows less than a tenth of it.
	const floodBytes = 1 << 20
	const onePong = 2 + 125
	ping := maskedFrame(opPing, bytes.Repeat([]byte("p"), 125))
	chunk := bytes.Repeat(ping, 64)
	var published []string
	for sent := 0; sent < floodBytes; sent += len(chunk) {
		if _, err := flooder.Write(chunk); err != nil {
			t.Fatalf("after %d KiB of pings: %v", sent>>10, err)
		}
		if held := conn.pendingControlBytes(); held > onePong {
			t.Fatalf("after %d KiB of pings, the server holds %d bytes of pongs for a client that reads none; at most one pong (%d bytes) may wait",
				(sent+len(chunk))>>10, held, onePong)
		}
		if len(published) < 16 {
			msg := fmt.Sprint("during the flood ", len(published))
			if _, _, err := s.hub.Publish(app.DefaultTopic, msg); err != nil {
				t.Fatal(err)
			}
			published = append(published, msg)
		}
	}

	// Now the flooder reads: what the server sent before, then its close.
	for {
		f, err := readServerFrame(frames)
		if err != nil {
			t.Fatalf("the connection ended without a close frame: %v", err)
		}
		if f.opcode != 0x8 {
			continue
		}
		if len(f.payload) < 2 {
			t.Fatalf("close frame %q carries no code", f.payload)
		}
		code, reason := int(binary.BigEndian.Uint16(f.payload)), string(f.payload[2:])
		if code != closePolicyViolation || reason != "too many pings while not reading" {
			t.Fatalf("closed with %d %q, want %d and a reason", code, reason, closePolicyViolation)
		}
		break
	}
	if _, err := flooder.Write(maskedFrame(0x8, binary.BigEndian.AppendUint16(nil, closeNormal))); err != nil {
		t.Fatalf("answering the close: %v", err)
	}

	msg := "after the flood"
	if _, _, err := s.hub.Publish(app.DefaultTopic, msg); err != nil {
		t.Fatal(err)
	}
	published = append(published, msg)
	for i, want := range published {
		_, got, err := healthy.ReadMessage()
		if err != nil {
			t.Fatalf("healthy subscriber, message %d: %v", i, err)
		}
		if string(got) != want {
			t.Fatalf("healthy subscriber, message %d: got %q, want %q", i, got, want)
		}
	}
}
