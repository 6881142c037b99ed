package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"herald/app"
)

// pageData feeds templates/index.html. The page's script reads the routes
// from data attributes, so moving a route in config.yaml moves the page's
// connections with it.
type pageData struct {
	Paths app.PathsConfig
}

type pageHandler struct {
	data pageData
}

func (h *pageHandler) show(c echo.Context) error {
	return c.Render(http.StatusOK, "index.html", h.data)
}
