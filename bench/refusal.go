package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// refusal is a server's answer other than the one asked for: a handshake
// it did not switch to WebSocket, or a publish it did not acknowledge. It
// says what the server said and, where that names one of Herald's limits,
// the setting to raise.
type refusal struct {
	status     int
	reason     string // the server's explanation: a JSON body's "error", else the body's first line
	retryAfter string // the Retry-After header, if any
}

// maxRefusalBody bounds how much of a refusal's body is read for its
// reason.
const maxRefusalBody = 4 << 10

// readRefusal reads a refusal from a response whose status is not the one
// asked for; it reads the body but leaves closing it to the caller.
func readRefusal(resp *http.Response) *refusal {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxRefusalBody))
	return &refusal{
		status:     resp.StatusCode,
		reason:     reasonIn(body, resp.Header.Get("Content-Type")),
		retryAfter: resp.Header.Get("Retry-After"),
	}
}

// reasonIn is the explanation in a refusal's body: Herald's JSON
// {"error": "..."}, or the first line of any other body.
func reasonIn(body []byte, contentType string) string {
	if mediaType, _, _ := mime.ParseMediaType(contentType); mediaType == "application/json" {
		var reply struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &reply) == nil && reply.Error != "" {
			return reply.Error
		}
	}
	first, _, _ := bytes.Cut(bytes.TrimSpace(body), []byte("\n"))
	return strings.TrimSpace(string(first))
}

func (r *refusal) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d", r.status)
	if r.reason != "" {
		b.WriteString(": " + r.reason)
	}
	if r.retryAfter != "" {
		b.WriteString(" (Retry-After: " + r.retryAfter + ")")
	}
	if hint := r.hint(); hint != "" {
		b.WriteString("; " + hint)
	}
	return b.String()
}

// limitHints are the setting to raise for each of Herald's refusals that
// a benchmark runs into, found by the wording of the server's reason.
var limitHints = []struct{ said, hint string }{
	{"subscriber connections from this address",
		"every benchmark client is on one address: raise limits.max_connections_per_ip on the server (bench/herald.yaml does)"},
	{"limit of subscriber connections",
		"raise limits.max_connections on the server"},
	{"publishes from this address",
		"every benchmark publisher is on one address: raise limits.publish_per_second and limits.publish_burst on the server, or set limits.publish_per_second: 0 (bench/herald.yaml does)"},
	{"too many topics",
		"raise limits.max_topics on the server"},
}

// hint says which of the server's settings refused, where its reason
// shows it and does not already name it.
func (r *refusal) hint() string {
	if strings.Contains(r.reason, "limits.") {
		return "" // Herald's reason names the setting itself
	}
	for _, h := range limitHints {
		if strings.Contains(r.reason, h.said) {
			return h.hint
		}
	}
	if r.status == http.StatusTooManyRequests {
		return "every benchmark client is on one address: raise the server's per-address limits"
	}
	return ""
}
