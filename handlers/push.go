package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"herald/app/access"
	"herald/app/push"
)

// maxPushBodyBytes bounds a push route's body: a browser's subscription
// is an endpoint of a few hundred bytes and two short keys.
const maxPushBodyBytes = 8 << 10

// pushHandler serves Web Push registration under paths.push: the VAPID
// public key, and a browser's subscription to a topic, added and removed.
// With push off, service is nil, and every push route answers 404 with
// the code push_disabled, so that the page can say the server cannot
// push.
type pushHandler struct {
	service *push.Service
	// authorize decides whether the client may read the topic: a browser
	// may register for what it could watch.
	authorize func(echo.Context, access.Action, string) (*access.Grant, error)
}

// errPushDisabled answers every push route while push.enabled is false.
var errPushDisabled = &clientError{status: http.StatusNotFound, code: "push_disabled",
	message: "this server does not push messages to browsers (push.enabled is false)"}

// pushKeyReply is the answer to GET paths.push/key.
type pushKeyReply struct {
	Key string `json:"key"`
}

// pushRegistration is the answer to a registration.
type pushRegistration struct {
	Topic    string `json:"topic"`
	Endpoint string `json:"endpoint"`
}

// key answers GET paths.push/key with the VAPID public key, which the page
// gives PushManager.subscribe as its applicationServerKey.
func (h *pushHandler) key(c echo.Context) error {
	if h.service == nil {
		return errPushDisabled
	}
	return c.JSON(http.StatusOK, pushKeyReply{Key: h.service.PublicKey()})
}

// register answers POST paths.push?topic=T, whose body is the browser's
// PushSubscription JSON, with 201. Registering the same endpoint for the
// topic again replaces its keys.
func (h *pushHandler) register(c echo.Context) error {
	topic, body, err := h.read(c)
	if err != nil {
		return err
	}
	sub, err := push.ParseSubscription(topic, body)
	if err != nil {
		return err
	}
	if err := h.service.Register(c.Request().Context(), sub); err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, pushRegistration{Topic: topic, Endpoint: sub.Endpoint})
}

// unregister answers DELETE paths.push?topic=T, whose body is
// {"endpoint": "..."}, with 204, whether the endpoint was registered or
// not.
func (h *pushHandler) unregister(c echo.Context) error {
	topic, body, err := h.read(c)
	if err != nil {
		return err
	}
	var request struct {
		Endpoint *string `json:"endpoint"`
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&request); err != nil || request.Endpoint == nil {
		return newClientError(http.StatusBadRequest, `the body must be {"endpoint": "..."}, the endpoint of the subscription to remove`)
	}
	if err := h.service.Unregister(c.Request().Context(), topic, *request.Endpoint); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// read checks that push is on, that the client may read ?topic=, and
// reads the body.
func (h *pushHandler) read(c echo.Context) (topic string, body []byte, err error) {
	if h.service == nil {
		return "", nil, errPushDisabled
	}
	if topic, err = topicParam(c.QueryParams()); err != nil {
		return "", nil, err
	}
	if _, err := h.authorize(c, access.Read, topic); err != nil {
		return "", nil, err
	}
	r := c.Request()
	if r.ContentLength > maxPushBodyBytes {
		return "", nil, newClientError(http.StatusRequestEntityTooLarge, "the body is %d bytes; a push subscription takes at most %d", r.ContentLength, maxPushBodyBytes)
	}
	body, err = io.ReadAll(http.MaxBytesReader(c.Response().Writer, r.Body, maxPushBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return "", nil, newClientError(http.StatusRequestEntityTooLarge, "the body is longer than a push subscription may be (%d bytes)", maxPushBodyBytes)
	}
	if err != nil {
		return "", nil, newClientError(http.StatusBadRequest, "read body: %v", err)
	}
	return topic, body, nil
}
