package push

import (
	"errors"
	"strings"
	"testing"

	"herald/app/push/pushtest"
)

func TestParseSubscriptionTakesWhatBrowsersSend(t *testing.T) {
	t.Parallel()
	fake := pushtest.Start(t)
	browser := fake.Subscribe(t)
	want := Subscription{Topic: "news", Endpoint: browser.Endpoint, P256dh: browser.P256dh, Auth: browser.Auth}
	padded := strings.Replace(browser.JSON(), browser.Auth, browser.Auth+"==", 1)
	for _, body := range []string{browser.JSON(), padded} {
		if got, err := ParseSubscription("news", []byte(body)); err != nil || got != want {
			t.Errorf("%s: %+v, %v", body, got, err)
		}
	}
	for _, body := range []string{
		browser.JSON() + browser.JSON(),
		`{"endpoint": "` + browser.Endpoint + `"}`,
		`{"endpoint": "` + browser.Endpoint + `", "keys": {"p256dh": "` + browser.P256dh + `"}}`,
		strings.Replace(browser.JSON(), browser.P256dh, browser.P256dh[:40]+"!"+browser.P256dh[41:], 1),
		`[]`,
		``,
	} {
		if _, err := ParseSubscription("news", []byte(body)); !errors.Is(err, ErrInvalidSubscription) {
			t.Errorf("%q: %v, want ErrInvalidSubscription", body, err)
		}
	}
}
