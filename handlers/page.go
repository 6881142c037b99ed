package handlers

import (
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"herald/app"
	"herald/app/access"
	"herald/app/config"
)

// pageData feeds templates/index.html. The page's script reads the routes
// and the topic from data attributes, so moving a route in config.yaml
// moves the page's connections with it.
type pageData struct {
	Paths config.Paths
	// Topic is the topic the page shows and publishes to.
	Topic string
	// IsDefaultTopic hides the topic from URLs the page shows, so the
	// seed's plain commands stay plain.
	IsDefaultTopic bool
	// TokensAccepted offers a token field; the page keeps the token in
	// the cookie TokenCookie, which its WebSocket and form send along.
	TokensAccepted bool
	TokenCookie    string
}

type pageHandler struct {
	paths config.Paths
	// tokensAccepted says whether the server takes any credential, so
	// that the page offers a token field.
	tokensAccepted bool
}

// show renders the page for ?topic=, the default topic when it is absent
// or empty: the topic switcher is a form, and an empty field means "home".
func (h *pageHandler) show(c echo.Context) error {
	topic, err := pageTopic(c)
	if err != nil {
		return err
	}
	return c.Render(http.StatusOK, "index.html", pageData{
		Paths: h.paths, Topic: topic, IsDefaultTopic: topic == app.DefaultTopic,
		TokensAccepted: h.tokensAccepted, TokenCookie: access.CookieName,
	})
}

// pageTopic is the topic a page's request names with ?topic=, the default
// topic when it is absent or empty.
func pageTopic(c echo.Context) (string, error) {
	topic := c.QueryParam("topic")
	if topic == "" {
		topic = app.DefaultTopic
	}
	return topic, app.CheckTopic(topic)
}

// pageURL is the page of topic.
func pageURL(pagePath, topic string) string {
	if topic == app.DefaultTopic {
		return pagePath
	}
	return pagePath + "?" + url.Values{"topic": {topic}}.Encode()
}
