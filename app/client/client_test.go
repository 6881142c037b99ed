package client

import (
	"errors"
	"testing"
)

func TestURLsNameTheRouteTheUserMeant(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		givenURL                   string
		expectEvents, expectNotify string
	}{
		{"localhost:9000", "http://localhost:9000/events", "http://localhost:9000/notify"},
		{"http://localhost:9000/", "http://localhost:9000/events", "http://localhost:9000/notify"},
		{"https://example.com/herald/", "https://example.com/herald/events", "https://example.com/herald/notify"},
		{"https://example.com/herald/events?topic=news", "https://example.com/herald/events?topic=news", "https://example.com/herald/notify?topic=news"},
		{"https://example.com/herald/notify", "https://example.com/herald/events", "https://example.com/herald/notify"},
		{"https://example.com/herald/ws?topic=news#top", "https://example.com/herald/events?topic=news", "https://example.com/herald/notify?topic=news"},
		{"wss://example.com/ws", "https://example.com/events", "https://example.com/notify"},
		{"ws://127.0.0.1:9000/ws?token=t", "http://127.0.0.1:9000/events?token=t", "http://127.0.0.1:9000/notify?token=t"},
		{"http://example.com/moved", "http://example.com/moved", "http://example.com/moved"},
	} {
		events, err := EventsURL(c.givenURL)
		if err != nil || events.String() != c.expectEvents {
			t.Errorf("EventsURL(%q) = %v, %v; want %s", c.givenURL, events, err, c.expectEvents)
		}
		if notify, err := NotifyURL(c.givenURL); err != nil || notify.String() != c.expectNotify {
			t.Errorf("NotifyURL(%q) = %v, %v; want %s", c.givenURL, notify, err, c.expectNotify)
		}
	}
	for _, bad := range []string{"", "ftp://example.com", "http://", "ws://example.com/live", "http://[::1"} {
		if u, err := EventsURL(bad); !errors.Is(err, ErrBadURL) {
			t.Errorf("EventsURL(%q) = %v, %v; want ErrBadURL", bad, u, err)
		}
	}
}
