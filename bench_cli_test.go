package main

import (
	"encoding/json"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
)

// runBench runs "herald bench" as a user would, against h, and returns its
// report as key=value pairs.
func runBench(t *testing.T, args ...string) map[string]string {
	t.Helper()
	var stdout strings.Builder
	if err := run(t.Context(), append([]string{"bench"}, args...), os.Getenv, &stdout, io.Discard); err != nil {
		t.Fatalf("herald bench %s: %v", strings.Join(args, " "), err)
	}
	report := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(stdout.String()), "\n") {
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("report line %q is not key=value", line)
		}
		report[key] = value
	}
	return report
}

func TestBenchCountsEveryDeliveryAgainstEveryMessage(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "limits:\n  publish_per_second: 0\n")
	report := runBench(t, "-ws", h.ws("/ws"), "-publish", h.Origin+"/notify",
		"-subscribers", "5", "-messages", "40", "-publishers", "3", "-pid", strconv.Itoa(os.Getpid()))
	for key, want := range map[string]string{
		"subscribers": "5", "messages": "40", "acknowledged": "40", "expected_deliveries": "200",
		"delivered": "200", "lost": "0", "duplicated": "0", "foreign_frames": "0", "publish_failures": "0", "read_errors": "0",
	} {
		if report[key] != want {
			t.Errorf("%s=%s, want %s", key, report[key], want)
		}
	}
	if cpu, _ := strconv.ParseFloat(report["server_cpu_seconds"], 64); report["server_rss_kib"] == "0" || cpu < 0 {
		t.Errorf("with -pid, server figures are cpu=%s rss=%s", report["server_cpu_seconds"], report["server_rss_kib"])
	}
}

// Subscribers of one topic, messages published to another: everything is
// lost, and the report must say so rather than report throughput.
func TestBenchReportsLoss(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "limits:\n  publish_per_second: 0\n")
	report := runBench(t, "-ws", h.ws("/ws?topic=listening"), "-publish", h.Origin+"/notify?topic=elsewhere",
		"-subscribers", "2", "-messages", "5", "-publishers", "1", "-wait", "200ms")
	if report["acknowledged"] != "5" || report["delivered"] != "0" || report["lost"] != "10" {
		t.Errorf("acknowledged=%s delivered=%s lost=%s, want 5, 0, 10", report["acknowledged"], report["delivered"], report["lost"])
	}
}

func TestBenchPrintsJSONAndRefusesBadFlags(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "limits:\n  publish_per_second: 0\n")
	var stdout strings.Builder
	err := run(t.Context(), []string{"bench", "-json", "-ws", h.ws("/ws"), "-publish", h.Origin + "/notify",
		"-subscribers", "1", "-messages", "3", "-publishers", "1"}, os.Getenv, &stdout, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var report struct {
		Delivered int `json:"delivered"`
		Lost      int `json:"lost"`
	}
	if err := json.Unmarshal([]byte(stdout.String()), &report); err != nil || report.Delivered != 3 || report.Lost != 0 {
		t.Errorf("JSON report %q (%v), want 3 delivered and none lost", stdout.String(), err)
	}
	for _, bad := range [][]string{{"-size", "10"}, {"-ws", "http://x/ws"}, {"-subscribers", "0"}, {"stray"}} {
		err := run(t.Context(), append([]string{"bench"}, bad...), os.Getenv, io.Discard, io.Discard)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("herald bench %v: %v, want one line saying what is wrong", bad, err)
		}
	}
}
