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
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
)

// refusal is a JSON error reply and its status.
type refusal struct {
	status int
	header http.Header
	error  string
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
	}
	json.Unmarshal(raw, &reply)
	return refusal{status: resp.StatusCode, header: resp.Header, error: reply.Error}
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
		{"givenTheSubscribeToken", http.Header{"Authorization": {"Bearer " + subscribeToken}}, "", 401},
		{"givenBearer", http.Header{"Authorization": {"Bearer " + publishToken}}, "", 200},
		{"givenQuery", nil, "&token=" + publishToken, 200},
	} {
		got := request(t, http.MethodGet, h.Origin+"/notify?msg=x"+tc.givenQuery, tc.givenHeader, "")
		if got.status != tc.expect {
			t.Errorf("%s: publish %d %q, want %d", tc.name, got.status, got.error, tc.expect)
		}
		if got.status == 401 && (got.header.Get("WWW-Authenticate") == "" || got.error == "") {
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
	if got.status != 429 || got.header.Get("Retry-After") != "1" || !strings.Contains(got.error, "too many publishes") {
		t.Errorf("publish past the burst: %d Retry-After %q %q", got.status, got.header.Get("Retry-After"), got.error)
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
