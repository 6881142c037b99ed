package ws

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/websocket"

	"herald/app"
)

// ErrHandshake reports an upgrade that x/net refused; it has written its
// answer to the client, and the connection is closed.
var ErrHandshake = errors.New("websocket handshake refused")

// IsUpgrade reports whether r asks to be upgraded to a WebSocket.
func IsUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

// Accept completes the WebSocket handshake of r, whose subscriber is
// registered already: a client that has connected has subscribed, so
// nothing published after its handshake can miss it. w must be able to
// hijack the connection. remote names the client in logs. The connection
// does nothing until Start.
//
// Clients without an Origin header (curl, Python, other servers) are
// accepted, where x/net's own handler would refuse them: the route checks
// origins before it subscribes.
func (s *Server) Accept(w http.ResponseWriter, r *http.Request, sub *app.Subscriber, json bool, remote string) (*Conn, error) {
	if _, ok := w.(http.Hijacker); !ok {
		return nil, errors.New("websocket upgrade: the response writer cannot hijack the connection")
	}
	hijacker := &deadlineHijacker{ResponseWriter: w, idleTimeout: s.cfg.IdleTimeout, writeTimeout: s.cfg.WriteTimeout}
	// x/net's Conn keeps a pointer into this Server for the life of the
	// connection, so its Handler captures nothing but where to put the
	// Conn: capturing the request's writer would keep net/http's buffers
	// for the connection alive as long.
	var upgraded *websocket.Conn
	server := &websocket.Server{
		Handshake: acceptAnyOrigin,
		Handler:   func(conn *websocket.Conn) { upgraded = conn },
	}
	slim := handshakeRequest(r)
	server.ServeHTTP(hijacker, slim)
	// x/net keeps the request for the life of the connection (Conn.Request)
	// but reads its headers only in the handshake, and every idle
	// connection would keep them.
	slim.Header = nil
	if upgraded == nil {
		if hijacker.conn != nil {
			_ = hijacker.conn.closeNow()
		}
		return nil, ErrHandshake
	}
	upgraded.MaxPayloadBytes = s.cfg.MaxFrameBytes
	return newConn(s, upgraded, hijacker, sub, json, remote), nil
}

// handshakeRequest is what x/net needs of the request to complete the
// handshake, which is all it keeps for the life of the connection: the
// method, the URL's path, the host and the WebSocket headers, not every
// header the client sent, nor the query, which the route has read already
// and which may be long. Each is a copy: net/http cuts the method, path
// and protocol out of the request line, which holds the query too.
func handshakeRequest(r *http.Request) *http.Request {
	header := make(http.Header, 8)
	for _, name := range []string{"Upgrade", "Connection", "Origin", "Sec-Websocket-Key", "Sec-Websocket-Version",
		"Sec-Websocket-Protocol", "Sec-Websocket-Extensions"} {
		for _, v := range r.Header[name] {
			header[name] = append(header[name], strings.Clone(v))
		}
	}
	path := &url.URL{Path: strings.Clone(r.URL.Path), RawPath: strings.Clone(r.URL.RawPath)}
	slim := &http.Request{Method: strings.Clone(r.Method), URL: path, Proto: strings.Clone(r.Proto), ProtoMajor: r.ProtoMajor, ProtoMinor: r.ProtoMinor,
		Header: header, Host: strings.Clone(r.Host), RemoteAddr: r.RemoteAddr, RequestURI: path.RequestURI(), TLS: r.TLS}
	return slim
}

// acceptAnyOrigin is the handshake check: origins are checked before the
// upgrade, by the origin policy, so x/net's own check is not used.
func acceptAnyOrigin(*websocket.Config, *http.Request) error { return nil }

func headerHasToken(h http.Header, name, token string) bool {
	for _, value := range h.Values(name) {
		for part := range strings.SplitSeq(value, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

// deadlineHijacker hands x/net/websocket a connection wrapped in a
// deadlineConn when it hijacks the request.
type deadlineHijacker struct {
	http.ResponseWriter
	idleTimeout  time.Duration
	writeTimeout time.Duration
	conn         *deadlineConn // set by Hijack
	reader       *bufio.Reader // set by Hijack
	early        *bytes.Reader // bytes net/http read past the handshake; nil if none
}

func (h *deadlineHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	raw, rw, err := h.ResponseWriter.(http.Hijacker).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// net/http has cleared its request deadlines; from here on each read
	// and write sets its own.
	conn := &deadlineConn{Conn: raw, idleTimeout: h.idleTimeout, writeTimeout: h.writeTimeout}
	conn.extendReadDeadline()
	// Small buffers of its own instead of net/http's 4 KiB pair, which
	// would otherwise live as long as the connection: x/net reads frame
	// headers a byte at a time from the reader and writes only pongs and
	// closes through the writer, and payloads bypass a small buffer anyway.
	// Bytes net/http has already buffered belong to the WebSocket stream.
	var reader io.Reader = conn
	if n := rw.Reader.Buffered(); n > 0 {
		buffered, _ := rw.Reader.Peek(n)
		h.early = bytes.NewReader(bytes.Clone(buffered))
		reader = io.MultiReader(h.early, conn)
	}
	h.conn = conn
	h.reader = bufio.NewReaderSize(reader, hijackBufferSize)
	return conn, bufio.NewReadWriter(h.reader, bufio.NewWriterSize(conn, hijackBufferSize)), nil
}

// hijackBufferSize is the size of each of a WebSocket connection's two
// buffers: enough for a frame header and a pong.
const hijackBufferSize = 256
