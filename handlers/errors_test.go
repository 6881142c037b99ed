package handlers

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"herald/app"
	"herald/app/config"
)

// A publish whose outcome the history file cannot tell is neither
// acknowledged nor refused: it gets a status and a code of its own, so
// that a publisher does not take it for a 503 and blindly publish again.
func TestStoreErrorsTellARefusalFromAnUnknownOutcome(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		givenErr   error
		expectCode int
		expectJSON string
	}{
		{"givenARefusal", fmt.Errorf("%w: journal: write: input/output error", app.ErrStore),
			http.StatusServiceUnavailable, ""},
		{"givenAnUnknownOutcome", fmt.Errorf("%w: %w: journal: write: input/output error", app.ErrPublishUnknown, app.ErrStore),
			http.StatusInternalServerError, "outcome_unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := echo.New()
			rec := httptest.NewRecorder()
			newErrorHandler(slog.New(slog.DiscardHandler), config.Default().Paths)(tc.givenErr, e.NewContext(httptest.NewRequest(http.MethodPost, "/notify", nil), rec))
			var body errorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != tc.expectCode || body.Code != tc.expectJSON || body.Error == "" {
				t.Errorf("got %d %s (%v), want %d with code %q", rec.Code, rec.Body, err, tc.expectCode, tc.expectJSON)
			}
		})
	}
}
