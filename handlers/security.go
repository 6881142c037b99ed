package handlers

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"

	"herald/app/config"

	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/time/rate"
)

// originPolicy decides which browser origins may subscribe and publish. It
// stops other sites from acting for a visitor (cross-site WebSocket
// hijacking, cross-site publishing) without getting in the way of clients
// that are not browsers, which send no Origin.
type originPolicy struct {
	allowed map[string]bool // exact origins, as browsers send them
	any     bool            // "*" was listed
}

func newOriginPolicy(allowed []string) *originPolicy {
	p := &originPolicy{allowed: map[string]bool{}}
	for _, origin := range allowed {
		p.any = p.any || origin == "*"
		p.allowed[origin] = true
	}
	return p
}

// check refuses a request from a browser on another site. Same-site means
// the Origin's host is the host the request was sent to, whatever the
// scheme, so a TLS-terminating proxy changes nothing; the host policy has
// already made sure that host is one of this server's names.
//
// A request without Origin that a browser marks as coming from another
// site (Sec-Fetch-Site cross-site or same-site) is refused too. Only a
// subscription may come from a navigation, which is what following a link
// is: a link, a GET form or a script's location change must never publish.
// curl and scripts send no Sec-Fetch-Site, and a URL typed into the address
// bar sends "none", so both still publish.
func (p *originPolicy) check(r *http.Request, a action) error {
	origin := r.Header.Get(echo.HeaderOrigin)
	if origin == "" {
		site := r.Header.Get("Sec-Fetch-Site")
		fromElsewhere := site == "cross-site" || site == "same-site"
		navigation := r.Header.Get("Sec-Fetch-Mode") == "navigate"
		if fromElsewhere && !p.any && (a == publishing || !navigation) {
			return newClientError(http.StatusForbidden, "%s from another site is not allowed", a)
		}
		return nil
	}
	if p.any || p.allowed[strings.ToLower(origin)] {
		return nil
	}
	if u, err := url.Parse(origin); err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host) {
		return nil
	}
	return newClientError(http.StatusForbidden,
		"%s from origin %q is not allowed: list it in security.allowed_origins", a, clip(origin))
}

// action is what a guarded route lets a client do.
type action string

const (
	publishing  action = "publishing"
	subscribing action = "subscribing"
	operating   action = "reading metrics and profiles"
	registering action = "registering for push"
)

// middleware applies check to every request of a route.
func (p *originPolicy) middleware(a action) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := p.check(c.Request(), a); err != nil {
				return err
			}
			return next(c)
		}
	}
}

// hostPolicy refuses requests addressed to a host name this server does
// not answer to. That defeats DNS rebinding: a page on evil.example whose
// name an attacker re-points at 127.0.0.1 reaches a Herald on a laptop or
// a private network, and since its Origin then matches its Host, the
// origin check alone would take it for this server's own page. Loopback
// names and IP literals are always answered (rebinding needs a name);
// public names must be listed in security.allowed_hosts.
type hostPolicy struct {
	any     bool
	exact   map[string]bool
	domains []string // ".example.com" also allows every subdomain
}

func newHostPolicy(allowed []string, listenHost string) *hostPolicy {
	p := &hostPolicy{exact: map[string]bool{}}
	for _, h := range allowed {
		switch {
		case h == "*":
			p.any = true
		case strings.HasPrefix(h, "."):
			p.domains = append(p.domains, h)
			p.exact[h[1:]] = true
		default:
			p.exact[h] = true
		}
	}
	if listenHost != "" && net.ParseIP(listenHost) == nil {
		p.exact[strings.ToLower(listenHost)] = true // the name it was told to listen on
	}
	return p
}

// allows reports whether hostport, a Host header, names this server.
func (p *hostPolicy) allows(hostport string) bool {
	if p.any || hostport == "" {
		return true // HTTP/1.0 has no Host; browsers always send one
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if net.ParseIP(host) != nil || host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	if p.exact[host] {
		return true
	}
	for _, d := range p.domains {
		if strings.HasSuffix(host, d) {
			return true
		}
	}
	return false
}

// middleware refuses every request whose Host is not allowed.
func (p *hostPolicy) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if host := c.Request().Host; !p.allows(host) {
			return newClientError(http.StatusForbidden,
				"this server does not answer to the host name %q: if it is this server's name, list it in security.allowed_hosts (the check stops DNS rebinding)",
				clip(host))
		}
		return next(c)
	}
}

// clientAddress returns how a request's client address is found. With no
// trusted proxies it is the TCP peer, whatever headers say. Otherwise a
// request from a trusted proxy may name its client: the right-most address
// in X-Forwarded-For that is not a trusted proxy, or else X-Real-IP. A
// client that is not a trusted proxy cannot change its address by sending
// those headers. Only the configured proxies are trusted: not, as Echo
// would by default, every loopback, link-local and private address.
func clientAddress(trusted []string) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	options := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, proxy := range trusted {
		if network, err := config.ParseAddressRange(proxy); err == nil { // validated with the config
			options = append(options, echo.TrustIPRange(network))
		}
	}
	fromXFF := echo.ExtractIPFromXFFHeader(options...)
	fromRealIP := echo.ExtractIPFromRealIPHeader(options...)
	return func(r *http.Request) string {
		if r.Header.Get(echo.HeaderXForwardedFor) != "" {
			return fromXFF(r)
		}
		return fromRealIP(r)
	}
}

// requireToken returns middleware that lets a request through only with
// the token, presented as any credential is (credentialFrom). With no token
// configured it lets everything through. Tokens are compared as SHA-256
// digests in constant time, so neither their content nor their length
// leaks through timing.
func requireToken(token string, doing action) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		if token == "" {
			return next
		}
		want := sha256.Sum256([]byte(token))
		return func(c echo.Context) error {
			given := credentialFrom(c.Request(), c.QueryParams())
			if given == "" {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="herald"`)
				return newClientError(http.StatusUnauthorized,
					"%s needs a token: send the header Authorization: Bearer TOKEN, or ?token=TOKEN", doing)
			}
			got := sha256.Sum256([]byte(given))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="herald", error="invalid_token"`)
				return newClientError(http.StatusUnauthorized, "the token for %s is not valid", doing)
			}
			return next(c)
		}
	}
}

// Refusals from connectionLimiter.
var (
	errTooManyConnections      = errors.New("the server holds its limit of subscriber connections")
	errTooManyConnectionsForIP = errors.New("too many subscriber connections from this address")
)

// connectionLimiter bounds open subscriber connections, in all and per
// client address. It holds an entry only for addresses with connections
// open, so its memory follows the connections.
type connectionLimiter struct {
	max, maxPerIP int

	mu    sync.Mutex
	total int
	perIP map[string]int
}

func newConnectionLimiter(max, maxPerIP int) *connectionLimiter {
	return &connectionLimiter{max: max, maxPerIP: maxPerIP, perIP: map[string]int{}}
}

// acquire takes a place for ip, or says why there is none. The caller
// calls release once the connection ends.
func (l *connectionLimiter) acquire(ip string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.total >= l.max:
		return &clientError{status: http.StatusServiceUnavailable, code: "too_many_connections",
			message: fmt.Sprintf("%v (%d, limits.max_connections); try again later", errTooManyConnections, l.max)}
	case l.perIP[ip] >= l.maxPerIP:
		return &clientError{status: http.StatusTooManyRequests, code: "too_many_connections_from_address",
			message: fmt.Sprintf("%v (%d, limits.max_connections_per_ip)", errTooManyConnectionsForIP, l.maxPerIP)}
	}
	l.total++
	l.perIP[ip]++
	return nil
}

func (l *connectionLimiter) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

// middleware holds a place for the request's address until the
// connection closes, which for a WebSocket is after the chain returns.
func (l *connectionLimiter) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ip := c.RealIP()
		if err := l.acquire(ip); err != nil {
			return err
		}
		scopeOf(c).onEnd(func() { l.release(ip) }) // when the connection closes
		return next(c)
	}
}

// publishRateLimit limits publishing per client address with a token
// bucket: burst publishes at once, then perSecond. Over it, the client gets
// 429 with Retry-After. Buckets of addresses that stop publishing expire,
// so memory follows the active publishers.
func publishRateLimit(perSecond float64, burst int) echo.MiddlewareFunc {
	if perSecond <= 0 {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	retryAfter := strconv.Itoa(int(math.Ceil(1 / perSecond)))
	return middleware.RateLimiterWithConfig(middleware.RateLimiterConfig{
		Store: middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{
			Rate: rate.Limit(perSecond), Burst: burst, ExpiresIn: 3 * time.Minute,
		}),
		IdentifierExtractor: func(c echo.Context) (string, error) { return c.RealIP(), nil },
		DenyHandler: func(c echo.Context, _ string, _ error) error {
			c.Response().Header().Set(echo.HeaderRetryAfter, retryAfter)
			return &clientError{status: http.StatusTooManyRequests, code: "too_many_publishes",
				message: fmt.Sprintf("too many publishes from this address: the limit is %s a second, %d at once (limits.publish_per_second, limits.publish_burst); retry after %ss",
					strconv.FormatFloat(perSecond, 'f', -1, 64), burst, retryAfter)}
		},
	})
}

// contentSecurityPolicy lets the page load only its own files, run no
// inline script, connect only back to this server, and be framed by no one.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"

// secureHeaders sets the headers every response gets. hsts is for servers
// that serve TLS themselves.
func secureHeaders(hsts bool) echo.MiddlewareFunc {
	secure := middleware.SecureConfig{
		ContentTypeNosniff:    "nosniff",
		XFrameOptions:         "DENY",
		ContentSecurityPolicy: contentSecurityPolicy,
		ReferrerPolicy:        "same-origin",
	}
	if hsts {
		secure.HSTSMaxAge = int((180 * 24 * time.Hour).Seconds())
	}
	return middleware.SecureWithConfig(secure)
}

// maxHeldHead is the longest request head (method, URL and headers)
// Herald holds after answering it. A subscription's request lives as long
// as its subscription (an event stream's handler runs that long, and what
// it names is kept), and net/http keeps a connection's last request line
// until the next request comes: without this bound, each connection could
// hold all that net/http reads of a head. Browsers and clients send far
// less, cookies included.
const maxHeldHead = 16 << 10

// boundedHead refuses a subscription whose request is longer than
// maxHeldHead, before anything is held for it.
func boundedHead(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if n := headSize(c.Request()); n > maxHeldHead {
			return &clientError{status: http.StatusRequestHeaderFieldsTooLarge, code: "request_too_large",
				message: fmt.Sprintf("the request's URL and headers are %d bytes long, and a subscription may send at most %d", n, maxHeldHead)}
		}
		return next(c)
	}
}

// closeAfterLongHead ends the connection once it has answered a request
// longer than maxHeldHead, which it would otherwise keep while it idles.
func closeAfterLongHead(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if headSize(c.Request()) > maxHeldHead {
			c.Response().Header().Set(echo.HeaderConnection, "close")
		}
		return next(c)
	}
}

// headSize is about how many bytes r's request line and headers took.
func headSize(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Host)
	for name, values := range r.Header {
		for _, v := range values {
			n += len(name) + len(v) + len(": \r\n")
		}
	}
	return n
}
