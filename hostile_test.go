package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
)

// A server under attack from many sides at once stays up, keeps its memory
// bounded, and every healthy subscriber gets every message a healthy
// publisher had acknowledged, in order.
//
// Not parallel: it measures the process's heap, which parallel tests
// would grow as well (a whole run of the package grew it by 88 MB while
// this test, alone, grows it by 1 to 3). Go runs the tests that are not
// parallel one at a time, before any parallel test goes on.
func TestHostileClientsHarmNobodyElse(t *testing.T) {
	h := startHerald(t, "limits:\n  publish_per_second: 5\n  publish_burst: 400\n  max_connections_per_ip: 600\n")
	healthy := dial(t, h.ws("/ws?format=json&since=0"))
	frames := readInBackground(healthy, 4096)

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	// Attacks come from 127.0.0.2, so the address limits fall on them.
	attacker := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	addr := strings.TrimPrefix(h.Origin, "http://")
	attackerHTTP := &http.Client{Transport: &http.Transport{DialContext: attacker.DialContext, MaxIdleConnsPerHost: 64}}
	handshake := "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	upgraded := func() net.Conn {
		conn, err := attacker.Dial("tcp", addr)
		if err != nil {
			t.Error(err)
			return nil
		}
		conn.SetDeadline(time.Now().Add(hangGuard))
		io.WriteString(conn, handshake)
		return conn
	}
	// Each attack ends its own connections; it only has to be sent.
	attacks := map[string]func(){
		"random bytes after the handshake": func() {
			manyAtOnce(20, func() {
				if conn := upgraded(); conn != nil {
					junk := make([]byte, 4096)
					for i := range junk {
						junk[i] = byte(rand.Uint32())
					}
					conn.Write(junk)
					io.Copy(io.Discard, conn) // until the server cuts it
					conn.Close()
				}
			})
		},
		"a frame header claiming 2^63 bytes": func() {
			manyAtOnce(20, func() {
				if conn := upgraded(); conn != nil {
					header := []byte{0x82, 0xFF}
					header = binary.BigEndian.AppendUint64(header, 1<<63-1)
					conn.Write(append(header, 1, 2, 3, 4)) // and a mask
					io.Copy(io.Discard, conn)
					conn.Close()
				}
			})
		},
		"truncated frames": func() {
			for range 20 {
				if conn := upgraded(); conn != nil {
					conn.Write([]byte{0x81, 0x80 | 100, 1, 2, 3, 4, 'a', 'b'}) // 100 bytes promised, 2 sent
					conn.Close()
				}
			}
		},
		"half-open HTTP connections": func() {
			var open []net.Conn
			for range 300 {
				conn, err := attacker.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					break
				}
				io.WriteString(conn, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n") // and never the end
				open = append(open, conn)
			}
			// They stay open while the healthy publisher works, below.
			t.Cleanup(func() {
				for _, c := range open {
					c.Close()
				}
			})
		},
		"cross-origin handshakes": func() {
			for range 50 {
				req, _ := http.NewRequest(http.MethodGet, h.Origin+"/ws", nil)
				req.Header.Set("Origin", "https://evil.example")
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "websocket")
				req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
				req.Header.Set("Sec-WebSocket-Version", "13")
				resp, err := attackerHTTP.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("cross-origin handshake: %d, want 403", resp.StatusCode)
				}
			}
		},
		"a flood of publishes": func() {
			refused := 0
			for i := range 1000 {
				resp, err := attackerHTTP.Get(h.Origin + "/notify?msg=" + fmt.Sprint("flood-", i))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusTooManyRequests {
					refused++
				}
			}
			if refused < 500 {
				t.Errorf("only %d of 1000 flooding publishes were refused", refused)
			}
		},
	}
	var wg sync.WaitGroup
	for name, attack := range attacks {
		wg.Go(func() {
			t.Logf("attack: %s", name)
			attack()
		})
	}

	// Meanwhile, a healthy publisher at its own address.
	var acknowledged []string
	for i := range 200 {
		msg := fmt.Sprint("healthy-", i)
		h.publish(t, msg)
		acknowledged = append(acknowledged, msg)
	}
	wg.Wait()
	h.publish(t, "end")

	// The healthy subscriber has every acknowledged message, in order,
	// among whatever of the flood got through.
	next := 0
	for {
		f := decodeFrame(t, frames.next(t))
		if f.Msg == "end" {
			break
		}
		if next < len(acknowledged) && f.Msg == acknowledged[next] {
			next++
		} else if !strings.HasPrefix(f.Msg, "flood-") {
			t.Fatalf("unexpected message %q while waiting for %q", f.Msg, acknowledged[next])
		}
	}
	if next != len(acknowledged) {
		t.Errorf("the healthy subscriber got %d of %d acknowledged messages", next, len(acknowledged))
	}
	var health map[string]string
	if code := getJSON(t, h.Origin+"/healthz", &health); code != 200 {
		t.Errorf("after the attacks healthz answers %d", code)
	}

	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	const bound = 64 << 20 // generous: the attacks sent a few MB
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > bound {
		t.Errorf("the heap grew by %d MB during the attacks", grew>>20)
	}
}

// decodeFrame reads a JSON-mode frame.
func decodeFrame(t *testing.T, raw string) jsonFrame {
	t.Helper()
	var f jsonFrame
	if err := json.Unmarshal([]byte(raw), &f); err != nil {
		t.Fatalf("frame %q: %v", raw, err)
	}
	return f
}

// manyAtOnce runs n copies of f at the same time and waits for them.
func manyAtOnce(n int, f func()) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(f)
	}
	wg.Wait()
}

// One address opening and closing subscriptions to made-up topic names
// must not block new topics for everyone until the next sweep.
func TestOpeningAndClosingSubscriptionsDoesNotUseUpTopics(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "limits:\n  max_topics: 20\n")
	for i := range 100 {
		conn := dial(t, h.ws(fmt.Sprintf("/ws?topic=made-up-%d", i)))
		// The server leaves the topic before it answers the close, so once
		// the answer is read the topic is free.
		if err := conn.WriteMessage(gorilla.CloseMessage, gorilla.FormatCloseMessage(gorilla.CloseNormalClosure, "")); err != nil {
			t.Fatal(err)
		}
		if code := closeCode(readUntilClosed(conn)); code != gorilla.CloseNormalClosure {
			t.Fatalf("subscription %d: closed with %d, want 1000", i, code)
		}
	}
	sub := dial(t, h.ws("/ws?topic=brand-new"))
	resp, err := http.Get(h.Origin + "/notify?topic=brand-new&msg=still+open")
	if err != nil {
		t.Fatal(err)
	}
	if r := decodeReceipt(t, resp); r.Subscribers != 1 {
		t.Errorf("publish to a new topic reached %d subscribers, want 1", r.Subscribers)
	}
	if got := readText(t, sub); got != "still open" {
		t.Errorf("subscriber got %q", got)
	}
}
