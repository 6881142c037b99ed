// Package readiness tells a Watcher when a socket has something to read:
// bytes, the peer's close, or an error. It lets a server keep thousands of
// idle connections without a goroutine parked on each one, and start a
// goroutine only for a connection that has something to say.
//
// On Linux a Poller is one epoll instance, edge-triggered, which is itself
// waited on through Go's own poller, so no thread blocks on it either.
// Elsewhere Watch reports errors.ErrUnsupported, and the caller reads the
// connection on a goroutine of its own.
package readiness

// Watcher is told about a watched socket. Both methods run on the Poller's
// goroutine: they must not block, nor call the Poller.
type Watcher interface {
	// Ready is called once for each edge: each time more bytes arrive, or
	// the peer closes or fails. A watcher must not count on one call per
	// arrival: an edge that comes while it is still reading what came
	// before is as good as told, so a watcher that goes idle must look at
	// the socket once more after saying so, since bytes may have come in
	// between. If bytes are waiting when the watch starts, Ready is called
	// at once.
	Ready()
	// PollerFailed is called once if the Poller fails for good; Ready is
	// not called again, and the socket must be read some other way.
	PollerFailed(err error)
}
