package push

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ErrEndpointNotAllowed wraps a subscription whose endpoint is at no push
// service of the allow-list: Herald posts only to the push services it
// was told of, so that nobody can make it post to an internal address.
var ErrEndpointNotAllowed = errors.New("push endpoint not allowed")

// DefaultEndpoints are the push services of the browsers most people use:
// Chrome's and Edge's on Android (FCM), Firefox's, Safari's, and Edge's on
// Windows (WNS, one host name per region).
func DefaultEndpoints() []string {
	return []string{
		"https://fcm.googleapis.com/",
		"https://updates.push.services.mozilla.com/",
		"https://web.push.apple.com/",
		"https://*.notify.windows.com/",
	}
}

// Endpoints is the allow-list of push services: URL prefixes, such as
// https://fcm.googleapis.com/. A prefix's host may start with "*." to
// stand for any one label there: https://*.notify.windows.com/ allows
// https://wns2-par02p.notify.windows.com/..., but not
// https://a.b.notify.windows.com/. The scheme, host and port must be the
// prefix's, and the path must start with the prefix's path.
type Endpoints struct {
	prefixes []endpointPrefix
}

type endpointPrefix struct {
	scheme, port, path string
	// host is lower case; with anyLabel, it is what follows "*.".
	host     string
	anyLabel bool
}

// ParseEndpoints reads an allow-list; CheckEndpointPrefix says what is
// wrong with an entry.
func ParseEndpoints(prefixes []string) (Endpoints, error) {
	var e Endpoints
	for _, prefix := range prefixes {
		if problem := CheckEndpointPrefix(prefix); problem != "" {
			return Endpoints{}, fmt.Errorf("push endpoint prefix %q %s", prefix, problem)
		}
		u, _ := url.Parse(prefix) // checked just now
		p := endpointPrefix{scheme: u.Scheme, port: portOf(u), path: u.Path, host: strings.ToLower(u.Hostname())}
		p.host, p.anyLabel = strings.CutPrefix(p.host, "*.")
		e.prefixes = append(e.prefixes, p)
	}
	return e, nil
}

// CheckEndpointPrefix explains what is wrong with an allow-list entry, or
// returns "". It must be https, or http to a loopback address (a push
// service on the same machine, as tests run), with a host and a path
// ending in "/", and nothing else.
func CheckEndpointPrefix(prefix string) string {
	u, err := url.Parse(prefix)
	switch {
	case err != nil:
		return "is not a URL"
	case u.Scheme != "https" && u.Scheme != "http":
		return "must start with https://"
	case u.Host == "" || u.Hostname() == "*." || u.Hostname() == "*":
		return "has no host"
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(prefix, "?#"):
		return "must be scheme://host[:port]/path/ only, with no login, query or fragment"
	case !strings.HasSuffix(u.Path, "/"):
		return `must end with "/", such as https://fcm.googleapis.com/`
	case strings.Contains(strings.TrimPrefix(u.Hostname(), "*."), "*"):
		return `may hold "*" only as its host's first label, such as https://*.notify.windows.com/`
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return "must be https: http is only for a push service on this machine (localhost, 127.0.0.1 or ::1)"
	}
	for _, segment := range strings.Split(u.Path, "/") {
		if segment == "." || segment == ".." {
			return `must not hold "." or ".." in its path`
		}
	}
	return ""
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// portOf is u's port, or its scheme's.
func portOf(u *url.URL) string {
	if port := u.Port(); port != "" {
		return port
	}
	if u.Scheme == "http" {
		return "80"
	}
	return "443"
}

// Check reports why Herald may not post to endpoint, or nil.
func (e Endpoints) Check(endpoint string) error {
	if err := CheckEndpoint(endpoint); err != nil {
		return err
	}
	u, _ := url.Parse(endpoint) // checked just now
	host, port := strings.ToLower(u.Hostname()), portOf(u)
	for _, p := range e.prefixes {
		if u.Scheme != p.scheme || port != p.port || !strings.HasPrefix(u.Path, p.path) {
			continue
		}
		if p.anyLabel {
			label, found := strings.CutSuffix(host, "."+p.host)
			if found && label != "" && !strings.Contains(label, ".") {
				return nil
			}
		} else if host == p.host {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is not a push service this server may post to", ErrEndpointNotAllowed, u.Scheme+"://"+u.Host)
}
