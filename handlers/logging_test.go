package handlers

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

// Above level info, requests that succeed are not logged and those the
// server failed still are.
func TestRequestLogsAboveInfoKeepOnlyServerErrors(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e := echo.New()
	e.Use(requestLogger(log))
	e.GET("/fine", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	e.GET("/broken", func(c echo.Context) error { return errors.New("the disk is gone") })
	for _, path := range []string{"/fine", "/broken"} {
		e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}
	if strings.Contains(logs.String(), "path=/fine") {
		t.Errorf("a 200 was logged at level warn:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "path=/broken status=500") || !strings.Contains(logs.String(), "the disk is gone") {
		t.Errorf("the 500 was not logged with its error at level warn:\n%s", logs.String())
	}
}
