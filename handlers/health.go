package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"herald/app"
)

// healthHandler answers liveness and readiness probes.
type healthHandler struct {
	node    *app.Node
	history string // "memory", "file" or "redis"
}

type healthReply struct {
	Status  string `json:"status"`
	History string `json:"history,omitempty"`
	Error   string `json:"error,omitempty"`
}

// live says the process is serving HTTP; it checks nothing else, so a
// restart is never triggered by a dependency.
func (h *healthHandler) live(c echo.Context) error {
	return c.JSON(http.StatusOK, healthReply{Status: "ok"})
}

// ready says whether Herald can take publishes and subscribers now: not
// while it is shutting down, nor while its history file or Redis does not
// answer, so that a load balancer sends traffic elsewhere.
func (h *healthHandler) ready(c echo.Context) error {
	if err := h.node.Ready(c.Request().Context()); err != nil {
		_, message := describeError(err)
		return c.JSON(http.StatusServiceUnavailable, healthReply{Status: "unavailable", History: h.history, Error: message})
	}
	return c.JSON(http.StatusOK, healthReply{Status: "ready", History: h.history})
}
