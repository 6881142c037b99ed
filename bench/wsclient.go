package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"herald/app/client"
)

// The load generator speaks the client side of RFC 6455 itself, rather than
// through a WebSocket library, so that it can read frames straight from the
// socket with the kernel's arrival time of each read (receive_linux.go).

// handshakeGUID is the constant RFC 6455 section 1.3 appends to the key.
const handshakeGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// maxHandshakeReply bounds the server's 101 reply and its headers.
const maxHandshakeReply = 16 << 10

// wsDial opens a WebSocket to rawURL (ws:// or wss://). It returns the
// connection and whatever the server sent after its 101 reply, which is the
// start of the first frame when the server sends at once.
func wsDial(ctx context.Context, rawURL string, timeout time.Duration) (net.Conn, []byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, err
	}
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "wss" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dialer := stampingDialer()
	conn, err := dialer.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, nil, err
	}
	// The context ends at the timeout or when the run is cancelled; either
	// way a past deadline ends the handshake's reads and writes.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if u.Scheme == "wss" {
		tlsConn := tls.Client(conn, &tls.Config{ServerName: u.Hostname()})
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, nil, err
		}
		conn = tlsConn
	}
	rest, err := upgrade(conn, u)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if !stop() {
		conn.Close()
		return nil, nil, ctx.Err()
	}
	conn.SetDeadline(time.Time{})
	return conn, rest, nil
}

// stampingDialer dials sockets that have the kernel time-stamp what they
// receive (stampArrivals) from before they connect.
func stampingDialer() *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, raw syscall.RawConn) error {
		var optErr error
		if err := raw.Control(func(fd uintptr) { optErr = stampArrivals(fd) }); err != nil {
			return err
		}
		return optErr
	}}
}

// upgrade sends the opening handshake on conn and checks the server's reply.
func upgrade(conn net.Conn, u *url.URL) (rest []byte, err error) {
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	request := "GET " + u.RequestURI() + " HTTP/1.1\r\n" +
		"Host: " + u.Host + "\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n\r\n"
	if _, err := conn.Write([]byte(request)); err != nil {
		return nil, err
	}
	reply := make([]byte, 0, 512)
	for {
		if end := bytes.Index(reply, []byte("\r\n\r\n")); end >= 0 {
			err := checkUpgradeReply(string(reply[:end]), key)
			if refused := (*refusal)(nil); errors.As(err, &refused) {
				return nil, fmt.Errorf("%w: %w", ErrNotUpgraded, readRefusalReply(refused, reply, conn))
			}
			if err != nil {
				return nil, err
			}
			return reply[end+4:], nil
		}
		if len(reply) == maxHandshakeReply {
			return nil, fmt.Errorf("the server's reply has no end of headers in %d bytes", maxHandshakeReply)
		}
		if len(reply) == cap(reply) {
			reply = append(reply, 0)[:len(reply)]
		}
		n, err := conn.Read(reply[len(reply):min(cap(reply), maxHandshakeReply)])
		reply = reply[:len(reply)+n]
		if err != nil && n == 0 {
			return nil, fmt.Errorf("reading the server's reply: %w", err)
		}
	}
}

// readRefusalReply reads the reason for a refused handshake from the
// reply's body, which starts in the reply read so far and goes on in conn.
// Without a readable body, the status is all there is to say.
func readRefusalReply(status *refusal, reply []byte, conn net.Conn) *refusal {
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(bytes.NewReader(reply), conn)), nil)
	if err != nil {
		return status
	}
	// The body is not closed, which would read it to its end: the caller
	// closes the connection instead.
	return readRefusal(resp)
}

// ErrNotUpgraded is a server's refusal to open a WebSocket.
var ErrNotUpgraded = errors.New("the server did not switch to WebSocket")

// checkUpgradeReply checks a 101 status line and the Sec-WebSocket-Accept
// that proves the server read this handshake's key.
func checkUpgradeReply(head, key string) error {
	statusLine, headers, _ := strings.Cut(head, "\r\n")
	proto, status, _ := strings.Cut(statusLine, " ")
	code, _, _ := strings.Cut(status, " ")
	if !strings.HasPrefix(proto, "HTTP/1.") {
		return fmt.Errorf("%w: the reply starts %q", ErrNotUpgraded, statusLine)
	}
	if code != "101" {
		if status, err := strconv.Atoi(code); err == nil {
			return &refusal{client.Refusal{Status: status}}
		}
		return fmt.Errorf("%w: the reply starts %q", ErrNotUpgraded, statusLine)
	}
	sum := sha1.Sum([]byte(key + handshakeGUID))
	want := base64.StdEncoding.EncodeToString(sum[:])
	for line := range strings.SplitSeq(headers, "\r\n") {
		name, value, _ := strings.Cut(line, ":")
		if strings.EqualFold(strings.TrimSpace(name), "Sec-WebSocket-Accept") {
			if strings.TrimSpace(value) != want {
				return fmt.Errorf("%w: Sec-WebSocket-Accept is %q, want %q", ErrNotUpgraded, strings.TrimSpace(value), want)
			}
			return nil
		}
	}
	return fmt.Errorf("%w: the 101 reply has no Sec-WebSocket-Accept", ErrNotUpgraded)
}
