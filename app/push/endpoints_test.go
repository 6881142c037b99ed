package push

import (
	"errors"
	"testing"
)

func TestEndpointsAllowOnlyTheirPushServices(t *testing.T) {
	t.Parallel()
	endpoints, err := ParseEndpoints(append(DefaultEndpoints(), "http://127.0.0.1:8080/push/"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		givenEndpoint string
		expectAllowed bool
	}{
		{"https://fcm.googleapis.com/fcm/send/abc:def", true},
		{"https://FCM.googleapis.com:443/fcm/send/abc", true},
		{"https://wns2-par02p.notify.windows.com/w/?token=abc", true},
		{"https://a.b.notify.windows.com/w/?token=abc", false},
		{"https://notify.windows.com/w/", false},
		{"https://evilnotify.windows.com/w/", false},
		{"https://fcm.googleapis.com.evil.example/fcm/send/abc", false},
		{"https://fcm.googleapis.com:8443/fcm/send/abc", false},
		{"http://fcm.googleapis.com/fcm/send/abc", false},
		{"https://web.push.apple.com/QGk", true},
		{"http://127.0.0.1:8080/push/abc", true},
		{"http://127.0.0.1:8080/other/abc", false},
		{"http://127.0.0.1:8081/push/abc", false},
		{"http://localhost:8080/push/abc", false},
		{"http://10.0.0.1/push/abc", false},
	} {
		t.Run(tc.givenEndpoint, func(t *testing.T) {
			err := endpoints.Check(tc.givenEndpoint)
			if allowed := err == nil; allowed != tc.expectAllowed {
				t.Errorf("allowed %v (%v), want %v", allowed, err, tc.expectAllowed)
			}
			if err != nil && !errors.Is(err, ErrEndpointNotAllowed) {
				t.Errorf("refused with %v, want ErrEndpointNotAllowed", err)
			}
		})
	}
}

// What cannot be a push service URL is refused as malformed, before any
// prefix is compared with it.
func TestMalformedEndpointsAreRefused(t *testing.T) {
	t.Parallel()
	endpoints, err := ParseEndpoints(DefaultEndpoints())
	if err != nil {
		t.Fatal(err)
	}
	for _, endpoint := range []string{
		"https://user@fcm.googleapis.com/fcm/send/abc",
		"https://fcm.googleapis.com/fcm/send/../../admin",
		"https://fcm.googleapis.com/fcm/send/abc#x",
		"fcm.googleapis.com/fcm/send/abc",
		"ftp://fcm.googleapis.com/x",
		"https:///x",
		"https://fcm.googleapis.com/" + string(make([]byte, 2100)),
	} {
		if err := endpoints.Check(endpoint); !errors.Is(err, ErrInvalidSubscription) {
			t.Errorf("%.60q: %v, want ErrInvalidSubscription", endpoint, err)
		}
	}
}

func TestEndpointPrefixProblems(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		givenPrefix   string
		expectProblem bool
	}{
		{"https://fcm.googleapis.com/", false},
		{"https://*.notify.windows.com/", false},
		{"http://localhost:9999/", false},
		{"http://[::1]:9999/push/", false},
		{"https://fcm.googleapis.com", true},
		{"http://fcm.googleapis.com/", true},
		{"http://10.0.0.1/", true},
		{"https://a.*.example/", true},
		{"https://*/", true},
		{"https://user@fcm.googleapis.com/", true},
		{"https://fcm.googleapis.com/?x=1", true},
		{"https://fcm.googleapis.com/a/../", true},
		{"ftp://fcm.googleapis.com/", true},
		{"not a url", true},
	} {
		if problem := CheckEndpointPrefix(tc.givenPrefix); (problem != "") != tc.expectProblem {
			t.Errorf("%q: problem %q, want one: %v", tc.givenPrefix, problem, tc.expectProblem)
		}
	}
}
