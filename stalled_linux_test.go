//go:build linux

package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
)

// stallingDialer makes connections with a small receive buffer: a client
// that stops reading on one fills it at once, and the server's send buffer
// soon after.
func stallingDialer() *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, raw syscall.RawConn) error {
		var err error
		if controlErr := raw.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
		}); controlErr != nil {
			return controlErr
		}
		return err
	}}
}

// largestSendBuffer is the most the kernel lets a socket's send buffer
// grow to (the maximum of net.ipv4.tcp_wmem). A server that has more than
// this to send to a client that reads nothing is left with a full socket.
func largestSendBuffer(t *testing.T) int {
	t.Helper()
	raw, err := os.ReadFile("/proc/sys/net/ipv4/tcp_wmem")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(raw))
	if len(fields) != 3 {
		t.Fatalf("tcp_wmem: %q", raw)
	}
	n, err := strconv.Atoi(fields[2])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestShutdownCutsSubscribersThatStoppedReadingAndWaitsForNoOne(t *testing.T) {
	t.Parallel()
	t.Run("plain", func(t *testing.T) {
		t.Parallel()
		testShutdownWithStalledSubscribers(t, false)
	})
	t.Run("TLS", func(t *testing.T) {
		t.Parallel()
		testShutdownWithStalledSubscribers(t, true)
	})
}

// testShutdownWithStalledSubscribers stops Herald while five WebSocket
// subscribers and an event stream have stopped reading, beside three
// healthy WebSocket subscribers and a healthy event stream.
func testShutdownWithStalledSubscribers(t *testing.T, overTLS bool) {
	// More than fits in a stalled client's socket, however large the
	// kernel lets it grow; the lag limit is well above it, so that only
	// shutdown ends the stalled ones. Nothing else may cut them short
	// either, so the write timeout, the idle timeout and the grace are
	// an hour or more.
	fill := largestSendBuffer(t) + 2<<20
	config := fmt.Sprintf("shutdown_grace: 1h\nwebsocket:\n  write_timeout: 1h\n  ping_interval: 1h\n  pong_timeout: 1h\nsse:\n  heartbeat_interval: 1h\n"+
		"limits:\n  publish_per_second: 0\n  max_lag_bytes: %d\n", 2*fill)
	var tlsConfig *tls.Config
	if overTLS {
		certFile, keyFile, pool := selfSignedCert(t)
		config += "tls:\n  cert: " + certFile + "\n  key: " + keyFile + "\n"
		tlsConfig = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	}
	h := startHerald(t, config)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	const size = 60 << 10
	count := fill/size + 1

	var healthy []*backgroundReader
	for range 3 {
		conn, _, err := (&gorilla.Dialer{TLSClientConfig: tlsConfig}).Dial(h.ws("/ws"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		healthy = append(healthy, readInBackground(conn, count+1))
	}
	healthyStream := openEventsVia(t, client, h.Origin+"/events", "")
	// A stalled client reads the head of the answer to its request, which
	// says it has subscribed, and nothing after it.
	stall := func(request string, wantStatus int) {
		conn, err := stallingDialer().Dial("tcp", strings.TrimPrefix(strings.TrimPrefix(h.Origin, "http://"), "https://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(hangGuard))
		if tlsConfig != nil {
			conn = tls.Client(conn, tlsConfig)
		}
		if _, err := io.WriteString(conn, request); err != nil {
			t.Fatal(err)
		}
		if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || resp.StatusCode != wantStatus {
			t.Fatalf("stalled client: %v %v", resp, err)
		}
	}
	for i := range 5 {
		// Two send a head too long for upgrade.Listener, so that net/http
		// upgrades them, on a connection of its own kind.
		padding := ""
		if i < 2 {
			padding = "X-Padding: " + strings.Repeat("p", 5<<10) + "\r\n"
		}
		stall("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+padding+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", http.StatusSwitchingProtocols)
	}
	stall("GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", http.StatusOK)

	var sent []string
	for i := range count {
		msg := fmt.Sprintf("%05d %s", i, strings.Repeat("x", size))
		resp, err := client.Post(h.Origin+"/notify", "text/plain", strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		if r := decodeReceipt(t, resp); r.Subscribers != 10 {
			t.Fatalf("message %d reached %d subscribers, want all 10", i, r.Subscribers)
		}
		sent = append(sent, msg)
	}
	for n, reader := range healthy {
		for i, want := range sent {
			if got := reader.next(t); got != want {
				t.Fatalf("healthy subscriber %d: message %d is %.10q…, want %.10q…", n, i, got, want)
			}
		}
	}
	for i, want := range sent {
		if got := healthyStream.next(t); got.Data != want {
			t.Fatalf("healthy event stream: message %d is %.10q…, want %.10q…", i, got.Data, want)
		}
	}

	if err := h.stopOrFail(t, "run did not return within a minute of SIGTERM: shutdown waited on the subscribers that stopped reading"); err != nil {
		t.Fatalf("run returned %v after a clean shutdown", err)
	}
	for n, reader := range healthy {
		if frame, more := <-reader.frames; more {
			t.Errorf("healthy subscriber %d got %.10q… after everything sent", n, frame)
		}
		if code := closeCode(<-reader.ended); code != gorilla.CloseGoingAway {
			t.Errorf("healthy subscriber %d closed with %d, want 1001", n, code)
		}
	}
	if rest, err := io.ReadAll(healthyStream.lines); err != nil || len(rest) != 0 {
		t.Errorf("the healthy event stream ended with %q, %v; want a clean end", rest, err)
	}
	// Each stalled subscriber was cut with messages it was never sent,
	// which are counted and logged; the healthy ones lost nothing.
	if lost := strings.Count(h.logs.String(), "subscriber gone with undelivered messages"); lost != 6 {
		t.Errorf("%d subscribers were logged as gone with undelivered messages, want the 6 stalled ones", lost)
	}
}
