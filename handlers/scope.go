package handlers

import (
	"sync"

	"github.com/labstack/echo/v4"
)

// requestScope holds what must be done when a request's connection is
// finished with. For most requests that is when the handler returns. A
// WebSocket handler hands its connection to goroutines of its own and
// returns at once, so that net/http's goroutine and buffers for the
// request go away; the scope is then detached, and its cleanups run when
// the WebSocket closes. Middleware that holds something for the life of a
// connection (a connection slot, a subscription) releases it through the
// scope, never with a defer of its own.
type requestScope struct {
	mu       sync.Mutex
	cleanups []func()
	detached bool
	ended    bool
}

const scopeKey = "herald.scope"

// withScope is the middleware that gives every request a scope and ends it
// when the handler returns, unless the handler detached it.
func withScope(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		scope := &requestScope{}
		c.Set(scopeKey, scope)
		defer scope.endUnlessDetached()
		return next(c)
	}
}

// scopeOf returns the request's scope. Outside withScope it returns a scope
// that ends with nothing to do, so handlers tested alone still work.
func scopeOf(c echo.Context) *requestScope {
	if s, ok := c.Get(scopeKey).(*requestScope); ok {
		return s
	}
	return &requestScope{}
}

// onEnd adds f to run when the scope ends, before those added earlier. If
// the scope has already ended, f runs now.
func (s *requestScope) onEnd(f func()) {
	s.mu.Lock()
	if !s.ended {
		s.cleanups = append(s.cleanups, f)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	f()
}

// detach keeps the scope open after the handler returns and returns the
// function that ends it, which the connection's owner calls once.
func (s *requestScope) detach() (end func()) {
	s.mu.Lock()
	s.detached = true
	s.mu.Unlock()
	return s.end
}

func (s *requestScope) endUnlessDetached() {
	s.mu.Lock()
	detached := s.detached
	s.mu.Unlock()
	if !detached {
		s.end()
	}
}

// end runs the cleanups, newest first, once.
func (s *requestScope) end() {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	cleanups := s.cleanups
	s.cleanups = nil
	s.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
}
