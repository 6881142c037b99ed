package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	gorilla "github.com/gorilla/websocket"
)

// refusal is a reply's status, headers and body, with the JSON error
// when there is one.
type refusal struct {
	status int
	header http.Header
	error  string
	code   string
	body   string
}

func request(t *testing.T, method, url string, header http.Header, body string) refusal {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var reply struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	json.Unmarshal(raw, &reply)
	return refusal{status: resp.StatusCode, header: resp.Header, error: reply.Error, code: reply.Code, body: string(raw)}
}

// dialWith connects with extra handshake headers and returns the status of
// a refused handshake, or 101.
func dialWith(t *testing.T, url string, header http.Header) (*gorilla.Conn, int) {
	t.Helper()
	conn, resp, err := gorilla.DefaultDialer.Dial(url, header)
	if err == nil {
		t.Cleanup(func() { conn.Close() })
		return conn, http.StatusSwitchingProtocols
	}
	if resp == nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	return nil, resp.StatusCode
}

func TestBrowsersOnOtherSitesCannotSubscribeOrPublish(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "security:\n  allowed_origins: [https://app.example.com]\n")
	tests := []struct {
		name         string
		givenOrigin  string
		expectStatus int
	}{
		{"givenNoOrigin_likeCurlOrPython", "", 101},
		{"givenThisServer", h.Origin, 101},
		{"givenThisHostOverHTTPS_behindAProxy", "https://" + strings.TrimPrefix(h.Origin, "http://"), 101},
		{"givenAnAllowedOrigin", "https://app.example.com", 101},
		{"givenAnotherSite", "https://evil.example", 403},
		{"givenAnAllowedHostWithAnotherScheme", "http://app.example.com", 403},
		{"givenOpaqueOrigin", "null", 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			header := http.Header{}
			if tc.givenOrigin != "" {
				header.Set("Origin", tc.givenOrigin)
			}
			if _, status := dialWith(t, h.ws("/ws"), header); status != tc.expectStatus {
				t.Errorf("WebSocket handshake: %d, want %d", status, tc.expectStatus)
			}
			wantPublish := map[int]int{101: 200, 403: 403}[tc.expectStatus]
			if got := request(t, http.MethodPost, h.Origin+"/notify", header, "msg=x"); got.status != wantPublish {
				t.Errorf("POST notify: %d %q, want %d", got.status, got.error, wantPublish)
			}
		})
	}
	// A cross-site fetch without Origin is still marked by the browser.
	header := http.Header{"Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"no-cors"}}
	if got := request(t, http.MethodPost, h.Origin+"/notify", header, "msg=x"); got.status != 403 {
		t.Errorf("cross-site POST without Origin: %d", got.status)
	}
	got := request(t, http.MethodGet, h.Origin+"/events", http.Header{"Origin": {"https://evil.example"}}, "")
	if got.status != 403 || !strings.Contains(got.error, "security.allowed_origins") {
		t.Errorf("cross-site event stream: %d %q", got.status, got.error)
	}
}

func TestGETPublishingCanBeTurnedOff(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "notify:\n  allow_get: false\n")
	sub := dial(t, h.ws("/ws"))
	got := request(t, http.MethodGet, h.Origin+"/notify?msg=from+a+link", nil, "")
	if got.status != 405 || got.header.Get("Allow") != "POST" || !strings.Contains(got.error, "notify.allow_get") {
		t.Errorf("GET publish: %d Allow %q %q", got.status, got.header.Get("Allow"), got.error)
	}
	if got := request(t, http.MethodPost, h.Origin+"/notify", nil, "msg=posted"); got.status != 200 {
		t.Fatalf("POST publish: %d %q", got.status, got.error)
	}
	if msg := readText(t, sub); msg != "posted" {
		t.Errorf("subscriber got %q first, want only the POSTed message", msg)
	}
}

func TestTokensGuardPublishingAndSubscribing(t *testing.T) {
	t.Parallel()
	const publishToken, subscribeToken = "pub-7d1c2e9a0b", "sub-44f0a8c3e1"
	h := startHeraldEnv(t, "host: 127.0.0.1\nport: 0\nsecurity:\n  publish_token: "+publishToken+"\n",
		map[string]string{"HERALD_SUBSCRIBE_TOKEN": subscribeToken})

	for _, tc := range []struct {
		name        string
		givenHeader http.Header
		givenQuery  string
		expect      int
	}{
		{"givenNoToken", nil, "", 401},
		{"givenWrongToken", http.Header{"Authorization": {"Bearer nope"}}, "", 401},
		// A good token that does not cover publishing (RFC 6750's
		// insufficient_scope).
		{"givenTheSubscribeToken", http.Header{"Authorization": {"Bearer " + subscribeToken}}, "", 403},
		{"givenBearer", http.Header{"Authorization": {"Bearer " + publishToken}}, "", 200},
		{"givenQuery", nil, "&token=" + publishToken, 200},
	} {
		got := request(t, http.MethodGet, h.Origin+"/notify?msg=x"+tc.givenQuery, tc.givenHeader, "")
		if got.status != tc.expect {
			t.Errorf("%s: publish %d %q, want %d", tc.name, got.status, got.error, tc.expect)
		}
		if got.status >= 400 && (got.header.Get("WWW-Authenticate") == "" || got.error == "") {
			t.Errorf("%s: a 401 without WWW-Authenticate or an explanation", tc.name)
		}
	}

	if _, status := dialWith(t, h.ws("/ws"), nil); status != 401 {
		t.Errorf("WebSocket without a token: %d, want 401 before the upgrade", status)
	}
	sub, status := dialWith(t, h.ws("/ws?token="+subscribeToken), nil)
	if status != 101 {
		t.Fatalf("WebSocket with ?token=: %d", status)
	}
	if got := request(t, http.MethodGet, h.Origin+"/events", nil, ""); got.status != 401 {
		t.Errorf("events without a token: %d", got.status)
	}
	req, _ := http.NewRequest(http.MethodGet, h.Origin+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+subscribeToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("events with a Bearer token: %d", resp.StatusCode)
	}

	request(t, http.MethodPost, h.Origin+"/notify?token="+publishToken, nil, "msg=guarded")
	if msg := readText(t, sub); msg != "guarded" {
		t.Errorf("subscriber got %q, want the publish made after it joined", msg)
	}
	h.Stop(t)
	if logs := h.logs.String(); strings.Contains(logs, publishToken) || strings.Contains(logs, subscribeToken) {
		t.Errorf("a token reached the log:\n%s", logs)
	}
}

func TestConnectionAndPublishLimits(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "limits:\n  max_connections: 3\n  max_connections_per_ip: 2\n  publish_per_second: 1\n  publish_burst: 2\n")
	dial(t, h.ws("/ws"))
	openEvents(t, h.Origin+"/events", "")
	if _, status := dialWith(t, h.ws("/ws"), nil); status != 429 {
		t.Errorf("a third connection from one address: %d, want 429", status)
	}
	// Another address still gets in: 127.0.0.2 is loopback too.
	other := gorilla.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		return d.Dial(network, addr)
	}}
	conn, _, err := other.Dial(h.ws("/ws"), nil)
	if err != nil {
		t.Fatalf("a connection from another address: %v", err)
	}
	defer conn.Close()
	// That was the third connection in all: a fourth is one too many.
	if _, status := dialWith(t, strings.Replace(h.ws("/ws"), "/ws", "/ws?topic=x", 1), nil); status != 503 && status != 429 {
		t.Errorf("past max_connections: %d", status)
	}
	conn2, resp, err := other.Dial(h.ws("/ws"), nil)
	if err == nil {
		conn2.Close()
		t.Error("a fourth connection was accepted past max_connections")
	} else if resp == nil || resp.StatusCode != 503 {
		t.Errorf("past max_connections from a fresh address: %v, want 503", err)
	}

	for i := range 2 {
		if got := request(t, http.MethodGet, h.Origin+"/notify?msg=x", nil, ""); got.status != 200 {
			t.Fatalf("publish %d within the burst: %d %q", i, got.status, got.error)
		}
	}
	got := request(t, http.MethodGet, h.Origin+"/notify?msg=x", nil, "")
	if got.status != 429 || got.header.Get("Retry-After") != "1" || got.code != "too_many_publishes" ||
		!strings.Contains(got.error, "limits.publish_per_second") {
		t.Errorf("publish past the burst: %d Retry-After %q %s %q", got.status, got.header.Get("Retry-After"), got.code, got.error)
	}
}

// A refusal for a limit names the key that sets it, and gives a code that
// programs can tell apart.
func TestLimitRefusalsNameTheirKeyAndCode(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "limits:\n  max_connections_per_ip: 1\n  max_topics: 1\n  max_message_bytes: 8\n")
	openEvents(t, h.Origin+"/events", "")
	for _, tc := range []struct {
		name, url      string
		status         int
		code, mentions string
	}{
		{"a second connection from one address", h.Origin + "/events?topic=other", 429, "too_many_connections_from_address", "limits.max_connections_per_ip"},
		{"a second topic", h.Origin + "/notify?topic=second&msg=x", 503, "too_many_topics", "limits.max_topics"},
		{"a message over the limit", h.Origin + "/notify?msg=123456789", 413, "message_too_large", "limits.max_message_bytes"},
	} {
		got := request(t, http.MethodGet, tc.url, nil, "")
		if got.status != tc.status || got.code != tc.code || !strings.Contains(got.error, tc.mentions) {
			t.Errorf("%s: %d %s %q, want %d %s naming %s", tc.name, got.status, got.code, got.error, tc.status, tc.code, tc.mentions)
		}
	}
}

func TestPagesCarrySecurityHeaders(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	resp, err := http.Get(h.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %s", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP %q allows inline or eval'd script", csp)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("headers %v", resp.Header)
	}
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key, and
// returns a pool that trusts it.
func selfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "herald test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSServesHTTPSAndWSS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSignedCert(t)
	h := startHerald(t, "tls:\n  cert: "+certFile+"\n  key: "+keyFile+"\n")
	if !strings.HasPrefix(h.URL, "https://") {
		t.Fatalf("start-up line says %s, want an https URL", h.URL)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	dialer := gorilla.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}}
	conn, _, err := dialer.Dial("wss"+strings.TrimPrefix(h.Origin, "https")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := client.Get(h.Origin + "/notify?msg=over+TLS")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("https publish: %d, HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
	if msg := readText(t, conn); msg != "over TLS" {
		t.Errorf("wss subscriber got %q", msg)
	}
}

func TestBadTLSFilesStopStartUp(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(path, []byte("port: 0\ntls:\n  cert: /nope/cert.pem\n  key: /nope/key.pem\n"), 0o600)
	err := run(t.Context(), []string{"-config", path}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "tls: load /nope/cert.pem and /nope/key.pem") {
		t.Errorf("run = %v", err)
	}
}

// Following a link, submitting a GET form or setting location from another
// site must never publish; curl and a URL typed into the address bar must.
func TestCrossSiteNavigationsNeverPublish(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	sub := dial(t, h.ws("/ws"))
	tests := []struct {
		name         string
		givenSite    string // Sec-Fetch-Site, "" for none sent
		givenMode    string // Sec-Fetch-Mode
		expectStatus int
	}{
		{"givenCurl_noFetchMetadata", "", "", 200},
		{"givenTypedIntoTheAddressBar", "none", "navigate", 200},
		{"givenThisSitesOwnLink", "same-origin", "navigate", 200},
		{"givenALinkFromAnotherSite", "cross-site", "navigate", 403},
		{"givenALinkFromASiblingSubdomain", "same-site", "navigate", 403},
	}
	for _, tc := range tests {
		header := http.Header{}
		if tc.givenSite != "" {
			header.Set("Sec-Fetch-Site", tc.givenSite)
			header.Set("Sec-Fetch-Mode", tc.givenMode)
		}
		got := request(t, http.MethodGet, h.Origin+"/notify?msg="+tc.name, header, "")
		if got.status != tc.expectStatus {
			t.Errorf("%s: GET notify %d %q, want %d", tc.name, got.status, got.error, tc.expectStatus)
		}
		if tc.expectStatus == 200 {
			if msg := readText(t, sub); msg != tc.name {
				t.Errorf("%s: subscriber got %q", tc.name, msg)
			}
		}
	}
	if got := publishedNext(t, h, sub); got != "sentinel" {
		t.Errorf("a refused navigation published %q", got)
	}
}

// publishedNext publishes a sentinel and returns the first message the
// subscriber reads after everything before it: proof, without waiting,
// that nothing else was published in between.
func publishedNext(t *testing.T, h *heraldProcess, sub *gorilla.Conn) string {
	t.Helper()
	h.publish(t, "sentinel")
	return readText(t, sub)
}

// The same, in a real browser: a page on another site submits a GET form
// to the notify route as soon as it loads.
func TestBrowserOnAnotherSiteCannotPublishByNavigating(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	sub := dial(t, h.ws("/ws"))
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<form id=f method=GET action="%s/notify"><input name=msg value=forged></form>
<script>document.getElementById("f").submit()</script>`, h.Origin)
	}))
	defer attacker.Close()
	// localhost and 127.0.0.1 are different sites to the browser.
	attackerURL := strings.Replace(attacker.URL, "127.0.0.1", "localhost", 1)

	tab := newTab(t)
	runIn(t, tab, chromedp.Navigate(attackerURL))
	landed := chromedp.Poll[bool](fmt.Sprintf(`location.href.startsWith(%q)`, h.Origin+"/notify"))
	if _, err := chromedp.Run(tab, landed); err != nil {
		t.Fatalf("the form never navigated to the notify route: %v", err)
	}
	body := get(t, tab, chromedp.Evaluate[string](`document.body.innerText`))
	if !strings.Contains(body, "another site") {
		t.Errorf("the refused navigation shows %q, want it to say why", body)
	}
	if got := publishedNext(t, h, sub); got != "sentinel" {
		t.Errorf("a cross-site form published %q", got)
	}
}

// DNS rebinding: a name the attacker controls, pointed at this server,
// arrives with matching Host and Origin headers.
func TestRequestsForUnknownHostNamesAreRefused(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	port := strings.TrimPrefix(h.Origin, "http://127.0.0.1:")
	tests := []struct {
		name         string
		givenHost    string
		expectStatus int
	}{
		{"givenTheIPAddress", "127.0.0.1:" + port, 200},
		{"givenLocalhost", "localhost:" + port, 200},
		{"givenASubdomainOfLocalhost", "herald.localhost:" + port, 200},
		{"givenIPv6Loopback", "[::1]:" + port, 200},
		{"givenAnotherIPAddress", "10.1.2.3", 200},
		{"givenARebindingName", "evil.example:" + port, 403},
		{"givenARebindingNameWithoutPort", "evil.example", 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			host := strings.TrimSuffix(strings.TrimSuffix(tc.givenHost, ":"+port), "]")
			origin := "http://" + tc.givenHost
			header := http.Header{"Host": {tc.givenHost}, "Origin": {origin}}
			got := requestHost(t, http.MethodPost, h.Origin+"/notify", tc.givenHost, origin, "msg=x")
			if got.status != tc.expectStatus {
				t.Errorf("notify for host %q: %d %q, want %d", host, got.status, got.error, tc.expectStatus)
			}
			if tc.expectStatus == 403 && !strings.Contains(got.error, "security.allowed_hosts") {
				t.Errorf("refusal %q does not name security.allowed_hosts", got.error)
			}
			wantWS := map[int]int{200: 101, 403: 403}[tc.expectStatus]
			if _, status := dialWith(t, h.ws("/ws"), header); status != wantWS {
				t.Errorf("WebSocket for host %q: %d, want %d", host, status, wantWS)
			}
		})
	}

	// A deployment at a real name lists it, and works.
	named := startHerald(t, "security:\n  allowed_hosts: [herald.example.com, .example.org]\n")
	for host, want := range map[string]int{
		"herald.example.com": 200, "a.b.example.org": 200, "example.org": 200,
		"evil.example": 403, "herald.example.com.evil.example": 403,
	} {
		if got := requestHost(t, http.MethodPost, named.Origin+"/notify", host, "http://"+host, "msg=x"); got.status != want {
			t.Errorf("allowed_hosts set: host %q: %d %q, want %d", host, got.status, got.error, want)
		}
	}
}

// requestHost sends a request with the Host and Origin headers a browser
// sends when a page reaches this server under host.
func requestHost(t *testing.T, method, url, host, origin, body string) refusal {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Origin", origin)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var reply struct {
		Error string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&reply)
	return refusal{status: resp.StatusCode, header: resp.Header, error: reply.Error}
}

// TestARequestHeadIsNoLongerThanAPublishNeeds: a connection idle between
// requests keeps its last request, so net/http's megabyte a head would be
// a megabyte each idle connection could hold. A head may be as long as a
// message published in the URL, every byte escaped, and no longer; a
// refused one ends its connection.
func TestARequestHeadIsNoLongerThanAPublishNeeds(t *testing.T) {
	t.Parallel()
	h := startHerald(t, unlimitedPublishing)
	maxMessage := 64 << 10                            // limits.max_message_bytes, by default
	escaped := strings.Repeat("%C3%A9", maxMessage/2) // the longest message, every byte escaped
	if got := request(t, http.MethodGet, h.Origin+"/notify?topic=long&msg="+escaped, nil, ""); got.status != http.StatusOK {
		t.Fatalf("a publish of the longest message in the URL: %d %s", got.status, got.error)
	}
	resp, err := http.Get(h.Origin + "/nope?padding=" + strings.Repeat("p", 4*maxMessage))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a head four times the longest message: %d, want 431", resp.StatusCode)
	}
	// net/http keeps a connection's last request line until the next
	// request: a long one is answered, then its connection closed.
	for _, tc := range []struct {
		padding   int
		wantClose bool
	}{{100, false}, {20 << 10, true}} {
		resp, err := http.Get(h.Origin + "/nope?padding=" + strings.Repeat("p", tc.padding))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || resp.Close != tc.wantClose {
			t.Errorf("a request with %d bytes of padding: %d, connection closed %v; want 404, %v", tc.padding, resp.StatusCode, resp.Close, tc.wantClose)
		}
	}
}
