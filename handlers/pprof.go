package handlers

import (
	"context"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// addProfiles serves Go's runtime profiles under prefix, as net/http/pprof
// does under /debug/pprof: the index, CPU profile, trace, and every named
// profile (heap, goroutine, allocs, block, mutex, threadcreate), each
// behind guards.
func addProfiles(e *echo.Echo, prefix string, guards ...echo.MiddlewareFunc) {
	e.GET(prefix+"/cmdline", echo.WrapHandler(http.HandlerFunc(pprof.Cmdline)), guards...)
	e.GET(prefix+"/profile", unbounded(pprof.Profile), guards...)
	e.GET(prefix+"/symbol", echo.WrapHandler(http.HandlerFunc(pprof.Symbol)), guards...)
	e.POST(prefix+"/symbol", echo.WrapHandler(http.HandlerFunc(pprof.Symbol)), guards...)
	e.GET(prefix+"/trace", unbounded(pprof.Trace), guards...)
	e.GET(prefix+"/*", func(c echo.Context) error {
		// pprof.Index serves the index at the prefix and a named profile
		// below it, but reads the name after "/debug/pprof/"; hand it the
		// name whatever prefix is configured.
		name := strings.TrimPrefix(c.Request().URL.Path, prefix+"/")
		if name == "" {
			pprof.Index(c.Response(), c.Request())
			return nil
		}
		pprof.Handler(name).ServeHTTP(c.Response(), c.Request())
		return nil
	}, guards...)
}

// unbounded runs a handler that streams for as long as it was asked to
// (?seconds=, 30 by default) past the server's write timeout, which would
// otherwise cut it off, or make pprof refuse the default 30 s profile.
func unbounded(h http.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := http.NewResponseController(c.Response()).SetWriteDeadline(time.Time{}); err != nil {
			return err
		}
		// pprof compares ?seconds= with the server's WriteTimeout, which it
		// finds in the request's context.
		req := c.Request()
		h(c.Response(), req.WithContext(context.WithValue(req.Context(), http.ServerContextKey, nil)))
		return nil
	}
}
