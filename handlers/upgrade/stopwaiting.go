package upgrade

import (
	"context"
	"net"
)

// WaitStopper is a connection whose writes can stop waiting for room in a
// full socket: from then on a write that finds it full fails at once,
// with what fitted written. A server that is shutting down uses it, so
// that a client that stopped reading does not hold it up.
type WaitStopper interface {
	StopWaiting()
}

// WaitStopperOf is the WaitStopper that conn is, or that it wraps with
// TLS; nil if there is none.
func WaitStopperOf(conn any) WaitStopper {
	if tlsConn, ok := conn.(interface{ NetConn() net.Conn }); ok {
		conn = tlsConn.NetConn()
	}
	stopper, _ := conn.(WaitStopper)
	return stopper
}

type connKey struct{}

// ConnContext is for http.Server.ConnContext: it keeps the connection in
// the context of the requests it carries, for WaitStopperFrom.
func ConnContext(ctx context.Context, conn net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, conn)
}

// WaitStopperFrom is the WaitStopper of the connection that carries the
// request whose context is ctx, where the server kept it (ConnContext);
// nil if there is none.
func WaitStopperFrom(ctx context.Context) WaitStopper {
	return WaitStopperOf(ctx.Value(connKey{}))
}
