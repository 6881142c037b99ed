package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"herald/app"
	"herald/app/config"
)

// The manifest's colours are the page's: its accent, which the icon is
// drawn in, for the window's title bar, and its background for the splash
// screen.
const (
	appThemeColor      = "#4f46e5"
	appBackgroundColor = "#f6f7fb"
)

// webAppManifest is the web app manifest that makes the page installable
// (https://www.w3.org/TR/appmanifest/).
type webAppManifest struct {
	Name            string         `json:"name"`
	ShortName       string         `json:"short_name"`
	StartURL        string         `json:"start_url"`
	Display         string         `json:"display"`
	ThemeColor      string         `json:"theme_color"`
	BackgroundColor string         `json:"background_color"`
	Icons           []manifestIcon `json:"icons"`
}

type manifestIcon struct {
	Src     string `json:"src"`
	Sizes   string `json:"sizes"`
	Type    string `json:"type"`
	Purpose string `json:"purpose"`
}

// manifestHandler serves the manifest of a topic's page. It is written per
// request rather than kept among the static files because it starts the
// app on the page of that topic, wherever paths.page puts it: each topic
// installs as an app of its own.
type manifestHandler struct {
	paths config.Paths
}

func (h *manifestHandler) show(c echo.Context) error {
	topic, err := pageTopic(c)
	if err != nil {
		return err
	}
	name, shortName := "Herald", "Herald"
	if topic != app.DefaultTopic {
		name, shortName = topic+" · Herald", topic
	}
	icon := func(file, sizes, purpose string) manifestIcon {
		return manifestIcon{Src: h.paths.Static + "/" + file, Sizes: sizes, Type: "image/png", Purpose: purpose}
	}
	c.Response().Header().Set(echo.HeaderContentType, "application/manifest+json")
	return c.JSON(http.StatusOK, webAppManifest{
		Name:            name,
		ShortName:       shortName,
		StartURL:        pageURL(h.paths.Page, topic),
		Display:         "standalone",
		ThemeColor:      appThemeColor,
		BackgroundColor: appBackgroundColor,
		Icons: []manifestIcon{
			icon("icon-192.png", "192x192", "any"),
			icon("icon-512.png", "512x512", "any"),
			icon("icon-maskable-512.png", "512x512", "maskable"),
		},
	})
}
