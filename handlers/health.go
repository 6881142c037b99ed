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
	Status  string       `json:"status"`
	History string       `json:"history,omitempty"`
	Broker  *brokerReply `json:"broker,omitempty"`
	Error   string       `json:"error,omitempty"`
}

// brokerReply is how a shared broker reaches its servers: for Redis, the
// mode; with Sentinel, the master and its replicas; in a cluster, how
// many masters answer of how many.
type brokerReply struct {
	Mode      string `json:"mode"`
	Master    string `json:"master,omitempty"`
	Replicas  *int   `json:"replicas,omitempty"`
	Masters   *int   `json:"masters,omitempty"`
	Answering *int   `json:"answering,omitempty"`
}

// newBrokerReply describes t; nil without a shared broker.
func newBrokerReply(t *app.BrokerTopology) *brokerReply {
	if t == nil {
		return nil
	}
	return &brokerReply{Mode: t.Mode, Master: t.Master, Replicas: t.Replicas, Masters: t.Masters, Answering: t.Answering}
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
	err := h.node.Ready(c.Request().Context())
	broker := newBrokerReply(h.node.BrokerTopology())
	if err != nil {
		_, message, _ := describeError(err)
		return c.JSON(http.StatusServiceUnavailable, healthReply{Status: "unavailable", History: h.history, Broker: broker, Error: message})
	}
	return c.JSON(http.StatusOK, healthReply{Status: "ready", History: h.history, Broker: broker})
}
