// Package readiness calls a function when a socket has something to read:
// bytes, the peer's close, or an error. It lets a server keep thousands of
// idle connections without a goroutine parked on each one, and start a
// goroutine only for a connection that has something to say.
//
// On Linux a Poller is one epoll instance, edge-triggered, which is itself
// waited on through Go's own poller, so no thread blocks on it either.
// Elsewhere Watch reports errors.ErrUnsupported, and the caller reads the
// connection on a goroutine of its own.
package readiness
