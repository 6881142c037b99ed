package handlers

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"

	"github.com/labstack/echo/v4"

	"herald/app"
)

// Encoded bodies may be larger than the message they carry:
// percent-encoding triples a byte and a JSON \u escape takes six.
const (
	encodedBodyFactor = 6
	encodedBodySlack  = 4 << 10 // other fields, multipart headers
)

// notifyHandler publishes messages: the seed's GET /notify?msg=..., and POST
// with a form, a text/plain body or JSON.
type notifyHandler struct {
	hub      *app.Hub
	pagePath string
}

// receipt is the reply to a publish.
type receipt struct {
	ID          string `json:"id"`
	Subscribers int    `json:"subscribers"`
}

func (h *notifyHandler) publish(c echo.Context) error {
	text, err := readMessage(c.Response().Writer, c.Request(), h.hub.MaxMessageBytes())
	if err != nil {
		return err
	}
	m, delivered, err := h.hub.Publish(app.DefaultTopic, text)
	if err != nil {
		return err
	}
	// The page's form, posted by a browser without JavaScript, returns to the page.
	if c.Request().Method == http.MethodPost && wantsHTML(c.Request()) {
		return c.Redirect(http.StatusSeeOther, h.pagePath)
	}
	return c.JSON(http.StatusOK, receipt{ID: strconv.FormatUint(m.ID, 10), Subscribers: delivered})
}

// readMessage extracts the message text from a publish request. The body is
// never read past its limit: a declared length over it is refused before
// reading, and an undeclared one stops at the limit. The hub checks the
// text itself (empty, size, UTF-8).
func readMessage(w http.ResponseWriter, r *http.Request, maxBytes int) (string, error) {
	query := r.URL.Query()
	if r.Method == http.MethodGet {
		return query.Get("msg"), nil
	}

	mediaType, params := "text/plain", map[string]string{}
	if ct := r.Header.Get(echo.HeaderContentType); ct != "" {
		var err error
		if mediaType, params, err = mime.ParseMediaType(ct); err != nil {
			return "", newClientError(http.StatusBadRequest, "Content-Type %q is malformed", ct)
		}
	}
	limit := int64(maxBytes)
	if mediaType != "text/plain" {
		limit = limit*encodedBodyFactor + encodedBodySlack
	}
	if r.ContentLength > limit {
		return "", newClientError(http.StatusRequestEntityTooLarge,
			"request body is %d bytes: the limit is %d", r.ContentLength, limit)
	}
	body := http.MaxBytesReader(w, r.Body, limit)

	var (
		text  string
		found bool
		err   error
	)
	switch mediaType {
	case "text/plain":
		text, err = readAll(body)
		found = text != ""
	case "application/x-www-form-urlencoded":
		text, found, err = readFormField(body)
	case "multipart/form-data":
		text, found, err = readMultipartField(body, params["boundary"])
	case "application/json":
		text, err = readJSONMessage(body)
		found = err == nil
	default:
		return "", newClientError(http.StatusUnsupportedMediaType,
			"Content-Type %q is not supported: send a form with msg=, text/plain, or JSON {\"msg\": \"...\"}", mediaType)
	}
	if err != nil {
		return "", err
	}
	if !found {
		// POST /notify?msg=... with no body is a publish too.
		if query.Has("msg") {
			return query.Get("msg"), nil
		}
		if mediaType != "text/plain" {
			return "", newClientError(http.StatusBadRequest,
				"form has no msg field: send msg=..., or a raw body with Content-Type: text/plain")
		}
	}
	return text, nil
}

func readAll(body io.Reader) (string, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return "", bodyError("read body", err)
	}
	return string(b), nil
}

func readFormField(body io.Reader) (string, bool, error) {
	b, err := readAll(body)
	if err != nil {
		return "", false, err
	}
	values, err := url.ParseQuery(b)
	if err != nil {
		return "", false, newClientError(http.StatusBadRequest, "form body is malformed: %v", err)
	}
	return values.Get("msg"), values.Has("msg"), nil
}

func readMultipartField(body io.Reader, boundary string) (string, bool, error) {
	if boundary == "" {
		return "", false, newClientError(http.StatusBadRequest, "multipart body has no boundary")
	}
	parts := multipart.NewReader(body, boundary)
	for {
		part, err := parts.NextPart()
		if errors.Is(err, io.EOF) {
			return "", false, nil
		}
		if err != nil {
			return "", false, bodyError("multipart body is malformed", err)
		}
		if part.FormName() != "msg" {
			continue // NextPart discards what this part left unread
		}
		b, err := io.ReadAll(part)
		if err != nil {
			return "", false, bodyError("multipart body is malformed", err)
		}
		return string(b), true, nil
	}
}

func readJSONMessage(body io.Reader) (string, error) {
	var payload struct {
		Msg *string `json:"msg"`
	}
	dec := json.NewDecoder(body)
	if err := dec.Decode(&payload); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field == "msg" {
			return "", newClientError(http.StatusBadRequest, "JSON msg must be a string")
		}
		return "", bodyError("JSON body is malformed", err)
	}
	if dec.More() {
		return "", newClientError(http.StatusBadRequest, "JSON body holds more than one value")
	}
	if payload.Msg == nil {
		return "", newClientError(http.StatusBadRequest, `JSON body has no "msg" field`)
	}
	return *payload.Msg, nil
}

// bodyError keeps a body-size error as it is, for a 413, and turns any other
// decoding error into a 400 that says what was wrong.
func bodyError(what string, err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return err
	}
	return newClientError(http.StatusBadRequest, "%s: %v", what, err)
}
