package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"herald/app/config"

	gorilla "github.com/gorilla/websocket"
)

// The files in testdata/deploy are what the README tells operators to use,
// so they are tested like code.

func TestSystemdUnitRunsHeraldAsDocumented(t *testing.T) {
	t.Parallel()
	unit, err := os.ReadFile("testdata/deploy/herald.service")
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for line := range strings.SplitSeq(string(unit), "\n") {
		if key, value, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[key] = value
		}
	}
	// Both commands must be ones Herald accepts: run them against a config.
	configPath := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(configPath, []byte("port: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"ExecStartPre", "ExecStart"} {
		fields := strings.Fields(settings[key])
		if len(fields) < 2 || fields[0] != "/usr/local/bin/herald" {
			t.Fatalf("%s = %q", key, settings[key])
		}
		args := append(fields[1:len(fields)-1], configPath) // the config path is last
		if key == "ExecStart" {
			args = append(args, "-version") // parse the flags, then stop at once
		}
		if err := run(t.Context(), args, func(string) string { return "" }, &strings.Builder{}, &strings.Builder{}); err != nil {
			t.Errorf("%s: herald %v: %v", key, args, err)
		}
	}
	stop, err := time.ParseDuration(strings.TrimSuffix(settings["TimeoutStopSec"], "s") + "s")
	if err != nil || stop <= config.Default().ShutdownGrace {
		t.Errorf("TimeoutStopSec=%s must exceed shutdown_grace (%s), or systemd kills a graceful stop", settings["TimeoutStopSec"], config.Default().ShutdownGrace)
	}
	if settings["Restart"] != "on-failure" || settings["StateDirectory"] != "herald" {
		t.Errorf("unit lacks Restart=on-failure or StateDirectory=herald: %v", settings)
	}
}

// The nginx file is run for real in front of Herald: WebSocket, SSE and
// publishing all go through it, and its read timeout outlasts Herald's
// keepalives.
func TestNginxConfigProxiesWebSocketsAndEvents(t *testing.T) {
	t.Parallel()
	nginx, site := shippedNginx(t)
	readTimeout := regexp.MustCompile(`proxy_read_timeout (\d+)s;`).FindSubmatch(site)
	cfg := config.Default()
	if readTimeout == nil {
		t.Fatal("nginx.conf sets no proxy_read_timeout")
	}
	seconds, _ := strconv.Atoi(string(readTimeout[1]))
	if limit := time.Duration(seconds) * time.Second; limit <= cfg.WebSocket.PingInterval+cfg.WebSocket.PongTimeout || limit <= cfg.SSE.HeartbeatInterval {
		t.Errorf("proxy_read_timeout %s would cut idle subscribers between keepalives", limit)
	}

	h := startHerald(t, "")
	proxy := startNginx(t, nginx, site, h)
	viaProxy := &heraldProcess{Origin: "http://" + proxy}
	ws := dial(t, viaProxy.ws("/ws?format=json&since=0"))
	events := openEvents(t, viaProxy.Origin+"/events", "")
	sent := viaProxy.publish(t, "through nginx")
	if f := readJSONFrame(t, ws); f.ID != sent.ID || f.Msg != "through nginx" {
		t.Errorf("WebSocket through nginx got %+v", f)
	}
	if ev := events.next(t); ev.ID != sent.ID || ev.Data != "through nginx" {
		t.Errorf("SSE through nginx got %+v", ev)
	}
}

// shippedNginx finds nginx, or skips (fails under HERALD_REQUIRE_E2E), and
// reads the shipped site config.
func shippedNginx(t *testing.T) (nginx string, site []byte) {
	t.Helper()
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		requireEnv(t, "nginx (Debian package nginx)")
	}
	site, err = os.ReadFile("testdata/deploy/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	return nginx, site
}

// startNginx runs nginx with the shipped site config in front of the
// instances, listed in its upstream as the README says, and returns the
// address it listens on.
func startNginx(t *testing.T, nginx string, site []byte, instances ...*heraldProcess) string {
	t.Helper()
	proxy := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	dir := t.TempDir()
	var upstream strings.Builder
	for i, h := range instances {
		if i > 0 {
			upstream.WriteString("\n    ")
		}
		upstream.WriteString("server " + strings.TrimPrefix(h.Origin, "http://") + ";")
	}
	site = []byte(strings.NewReplacer(
		"server 127.0.0.1:9000;", upstream.String(),
		"listen 80;", "listen "+proxy+";",
	).Replace(string(site)))
	if err := os.WriteFile(filepath.Join(dir, "herald.conf"), site, 0o600); err != nil {
		t.Fatal(err)
	}
	main := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log stderr warn;
events {}
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/herald.conf;
}
`, dir)
	mainPath := filepath.Join(dir, "main.conf")
	if err := os.WriteFile(mainPath, []byte(main), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-p", dir, "-c", mainPath)
	cmd.Stderr = newTestLog(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitForListener(t, proxy)
	return proxy
}

// Behind the shipped nginx config, with nginx listed as a trusted proxy,
// per-address limits fall on each client, not on the proxy they share, and
// a client cannot name itself another address with a forged header.
func TestBehindNginxLimitsApplyPerClient(t *testing.T) {
	t.Parallel()
	nginx, site := shippedNginx(t)
	h := startHerald(t, "security:\n  trusted_proxies: [127.0.0.1]\nlimits:\n  max_connections_per_ip: 2\n")
	proxy := startNginx(t, nginx, site, h)
	url := "ws://" + proxy + "/ws"

	// Clients on two loopback addresses, as two machines would be.
	from := func(ip string, header http.Header) int {
		dialer := gorilla.Dialer{NetDialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext}
		conn, resp, err := dialer.Dial(url, header)
		if err == nil {
			t.Cleanup(func() { conn.Close() })
			return http.StatusSwitchingProtocols
		}
		if resp == nil {
			t.Fatalf("dial from %s: %v", ip, err)
		}
		return resp.StatusCode
	}
	for i := range 2 {
		if status := from("127.0.0.2", nil); status != http.StatusSwitchingProtocols {
			t.Fatalf("client A's connection %d: %d", i+1, status)
		}
	}
	if status := from("127.0.0.2", nil); status != http.StatusTooManyRequests {
		t.Errorf("client A's third connection: %d, want 429: the limit is per client", status)
	}
	// A forged X-Forwarded-For: nginx appends the real address after it,
	// and Herald takes the right-most address that is not a trusted proxy.
	forged := http.Header{"X-Forwarded-For": {"198.51.100.9"}}
	if status := from("127.0.0.2", forged); status != http.StatusTooManyRequests {
		t.Errorf("client A with a forged X-Forwarded-For: %d, want 429 still", status)
	}
	if status := from("127.0.0.3", nil); status != http.StatusSwitchingProtocols {
		t.Errorf("client B behind the same proxy: %d, want 101: A's connections are not B's", status)
	}
	// Straight to Herald, not through nginx, the same header means nothing:
	// 127.0.0.4 is not a trusted proxy.
	direct := gorilla.Dialer{NetDialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.4")}}).DialContext}
	for i := range 3 {
		conn, resp, err := direct.Dial(h.ws("/ws"), http.Header{"X-Forwarded-For": {fmt.Sprint("198.51.100.", i)}})
		if err == nil {
			t.Cleanup(func() { conn.Close() })
		}
		if want := map[bool]int{true: 101, false: 429}[i < 2]; (err == nil && want != 101) || (err != nil && (resp == nil || resp.StatusCode != want)) {
			t.Errorf("direct connection %d from 127.0.0.4 with a made-up X-Forwarded-For: %v, want %d", i+1, err, want)
		}
	}
}

// waitForListener waits until addr accepts connections. nginx has no way to
// say that it is ready, so this is the one place that polls: a refused
// dial is tried again a moment later, for at most hangGuard.
func waitForListener(t *testing.T, addr string) {
	t.Helper()
	retry := time.NewTicker(20 * time.Millisecond)
	defer retry.Stop()
	deadline := time.After(hangGuard)
	for {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
			return
		}
		select {
		case <-retry.C:
		case <-deadline:
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
	}
}
