package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"

	"github.com/labstack/echo/v4"

	"herald/app"
	"herald/app/access"
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
	node            *app.Node
	maxMessageBytes int
	pagePath        string
	// authorize decides whether the client may publish to the topic.
	authorize func(echo.Context, access.Action, string) (*access.Grant, error)
}

// receipt is the reply to a publish.
type receipt struct {
	ID          string `json:"id"`
	Topic       string `json:"topic"`
	Subscribers int    `json:"subscribers"`
}

func (h *notifyHandler) publish(c echo.Context) error {
	p, err := readPublication(c.Response().Writer, c.Request(), h.maxMessageBytes)
	if err != nil {
		return err
	}
	topic := app.DefaultTopic
	if p.topic != nil {
		topic = *p.topic
	}
	if err := app.CheckTopic(topic); err != nil {
		return err // a bad name is a 400 whoever asks
	}
	if _, err := h.authorize(c, access.Write, topic); err != nil {
		return err
	}
	key, err := idempotencyKey(c.Request().Header)
	if err != nil {
		return err
	}
	m, delivered, err := h.node.Publish(c.Request().Context(), topic, p.text, key)
	if err != nil {
		return err
	}
	// The page's form, posted by a browser without JavaScript, returns to
	// the page of the same topic.
	if c.Request().Method == http.MethodPost && wantsHTML(c.Request()) {
		return c.Redirect(http.StatusSeeOther, pageURL(h.pagePath, topic))
	}
	return c.JSON(http.StatusOK, receipt{ID: strconv.FormatUint(m.ID, 10), Topic: topic, Subscribers: delivered})
}

// idempotencyKeyHeader names a publish, so that a publisher that retries
// one whose answer never came, or whose outcome was unknown, does not
// publish it twice.
const (
	idempotencyKeyHeader = "Idempotency-Key"
	maxIdempotencyKey    = 64
)

// idempotencyKey is the publish's key, "" when the request sends none. A
// key that is not 1 to 64 visible ASCII characters is refused: an empty one
// too, since a publisher that sends the header means to be kept from
// publishing twice, and an empty key would quietly not do that.
func idempotencyKey(header http.Header) (string, error) {
	values, given := header[idempotencyKeyHeader]
	if !given {
		return "", nil
	}
	key := values[0]
	valid := len(values) == 1 && key != "" && len(key) <= maxIdempotencyKey
	for i := 0; valid && i < len(key); i++ {
		valid = key[i] > ' ' && key[i] <= '~'
	}
	if !valid {
		return "", newClientError(http.StatusBadRequest,
			"%s must be one header of 1 to %d visible ASCII characters, such as a UUID", idempotencyKeyHeader, maxIdempotencyKey)
	}
	return key, nil
}

// getPublishingOff answers GET on the notify route when notify.allow_get is
// false.
func getPublishingOff(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderAllow, http.MethodPost)
	return newClientError(http.StatusMethodNotAllowed,
		"publishing with GET is turned off on this server (notify.allow_get: false): POST the message instead")
}

// publication is what a publish request asks for.
type publication struct {
	text  string
	topic *string // nil when the request names no topic
}

// readPublication extracts the message text and topic from a publish
// request. The topic comes from the same place as the message (query, form
// field or JSON field), or else from ?topic=; a body that names a topic
// other than ?topic= is refused, since either choice would publish where
// one of the two said not to. The body is never read past its limit: a
// declared length over it is refused before reading, and an undeclared one
// stops at the limit. The hub checks the text itself (empty, size, UTF-8).
func readPublication(w http.ResponseWriter, r *http.Request, maxBytes int) (publication, error) {
	p, err := readMessage(w, r, maxBytes)
	if err != nil {
		return p, err
	}
	if query := r.URL.Query(); query.Has("topic") {
		inURL := query.Get("topic")
		switch {
		case p.topic == nil:
			p.topic = &inURL
		case *p.topic != inURL:
			return p, newClientError(http.StatusBadRequest,
				"the request names two topics, %q in the body and %q in the URL: name it once", *p.topic, inURL)
		}
	}
	return p, nil
}

func readMessage(w http.ResponseWriter, r *http.Request, maxBytes int) (publication, error) {
	query := r.URL.Query()
	if r.Method == http.MethodGet {
		return publication{text: query.Get("msg")}, nil // topic: readPublication
	}

	mediaType, params := "text/plain", map[string]string{}
	if ct := r.Header.Get(echo.HeaderContentType); ct != "" {
		var err error
		if mediaType, params, err = mime.ParseMediaType(ct); err != nil {
			return publication{}, newClientError(http.StatusBadRequest, "Content-Type %q is malformed", ct)
		}
	}
	limit := int64(maxBytes)
	if mediaType != "text/plain" {
		limit = limit*encodedBodyFactor + encodedBodySlack
	}
	if r.ContentLength > limit {
		return publication{}, messageTooLarge(fmt.Sprintf("the request body is %d bytes", r.ContentLength), maxBytes)
	}
	body := http.MaxBytesReader(w, r.Body, limit)

	var (
		p     publication
		found bool
		err   error
	)
	switch mediaType {
	case "text/plain":
		p.text, err = readAll(body)
		found = p.text != ""
	case "application/x-www-form-urlencoded":
		p, found, err = readForm(body)
	case "multipart/form-data":
		p, found, err = readMultipartForm(body, params["boundary"])
	case "application/json":
		p, err = readJSONMessage(body)
		found = err == nil
	default:
		return publication{}, newClientError(http.StatusUnsupportedMediaType,
			"Content-Type %q is not supported: send a form with msg=, text/plain, or JSON {\"msg\": \"...\"}", mediaType)
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return publication{}, messageTooLarge("the request body is longer", maxBytes)
	}
	if err != nil {
		return publication{}, err
	}
	if !found {
		// POST /notify?msg=... with no body is a publish too.
		if query.Has("msg") {
			p.text = query.Get("msg")
			return p, nil
		}
		if mediaType != "text/plain" {
			return publication{}, newClientError(http.StatusBadRequest,
				"form has no msg field: send msg=..., or a raw body with Content-Type: text/plain")
		}
	}
	return p, nil
}

// messageTooLarge refuses a message in the units the user configured:
// bytes of message text, as limits.max_message_bytes counts them, never the
// allowance a form or JSON encoding adds to the body.
func messageTooLarge(what string, maxBytes int) error {
	return &clientError{status: http.StatusRequestEntityTooLarge, code: "message_too_large",
		message: fmt.Sprintf("message is too large: %s, and a message may be at most %d bytes (limits.max_message_bytes)", what, maxBytes)}
}

func readAll(body io.Reader) (string, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return "", bodyError("read body", err)
	}
	return string(b), nil
}

// readForm reads msg and topic from a urlencoded form; found reports msg.
func readForm(body io.Reader) (p publication, found bool, err error) {
	b, err := readAll(body)
	if err != nil {
		return publication{}, false, err
	}
	values, err := url.ParseQuery(b)
	if err != nil {
		return publication{}, false, newClientError(http.StatusBadRequest, "form body is malformed: %v", err)
	}
	if values.Has("topic") {
		topic := values.Get("topic")
		p.topic = &topic
	}
	p.text = values.Get("msg")
	return p, values.Has("msg"), nil
}

// readMultipartForm reads the msg and topic parts; found reports msg. Other
// parts are skipped unread.
func readMultipartForm(body io.Reader, boundary string) (p publication, found bool, err error) {
	if boundary == "" {
		return publication{}, false, newClientError(http.StatusBadRequest, "multipart body has no boundary")
	}
	parts := multipart.NewReader(body, boundary)
	for {
		part, err := parts.NextPart()
		if errors.Is(err, io.EOF) {
			return p, found, nil
		}
		if err != nil {
			return publication{}, false, bodyError("multipart body is malformed", err)
		}
		name := part.FormName()
		if name != "msg" && name != "topic" {
			continue // NextPart discards what this part left unread
		}
		b, err := io.ReadAll(part)
		if err != nil {
			return publication{}, false, bodyError("multipart body is malformed", err)
		}
		if name == "msg" {
			p.text, found = string(b), true
		} else {
			topic := string(b)
			p.topic = &topic
		}
	}
}

func readJSONMessage(body io.Reader) (publication, error) {
	var payload struct {
		Msg   *string `json:"msg"`
		Topic *string `json:"topic"`
	}
	dec := json.NewDecoder(body)
	if err := dec.Decode(&payload); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && (typeErr.Field == "msg" || typeErr.Field == "topic") {
			return publication{}, newClientError(http.StatusBadRequest, "JSON %s must be a string", typeErr.Field)
		}
		return publication{}, bodyError("JSON body is malformed", err)
	}
	if dec.More() {
		return publication{}, newClientError(http.StatusBadRequest, "JSON body holds more than one value")
	}
	if payload.Msg == nil {
		return publication{}, newClientError(http.StatusBadRequest, `JSON body has no "msg" field`)
	}
	return publication{text: *payload.Msg, topic: payload.Topic}, nil
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
