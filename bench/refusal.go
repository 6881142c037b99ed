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
	code       string // Herald's machine-readable reason, if the body has one
	retryAfter string // the Retry-After header, if any
}

// maxRefusalBody bounds how much of a refusal's body is read for its
// reason.
const maxRefusalBody = 4 << 10

// readRefusal reads a refusal from a response whose status is not the one
// asked for; it reads the body but leaves closing it to the caller.
func readRefusal(resp *http.Response) *refusal {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxRefusalBody))
	r := &refusal{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	r.reason, r.code = reasonIn(body, resp.Header.Get("Content-Type"))
	return r
}

// reasonIn is the explanation in a refusal's body, and its code: Herald's
// JSON {"error": "...", "code": "..."}, or the first line of any other
// body.
func reasonIn(body []byte, contentType string) (reason, code string) {
	if mediaType, _, _ := mime.ParseMediaType(contentType); mediaType == "application/json" {
		var reply struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		if json.Unmarshal(body, &reply) == nil && reply.Error != "" {
			return reply.Error, reply.Code
		}
	}
	first, _, _ := bytes.Cut(bytes.TrimSpace(body), []byte("\n"))
	return strings.TrimSpace(string(first)), ""
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

// limitHints say what to do about Herald's refusals that a benchmark runs
// into, by their code: Herald's reason names the setting, and a benchmark
// has every client on one address.
var limitHints = map[string]string{
	"too_many_connections_from_address": "every benchmark client is on one address: raise limits.max_connections_per_ip on the server (bench/herald.yaml does)",
	"too_many_connections":              "raise limits.max_connections on the server",
	"too_many_publishes":                "every benchmark publisher is on one address: raise limits.publish_per_second and limits.publish_burst on the server, or set limits.publish_per_second: 0 (bench/herald.yaml does)",
	"too_many_topics":                   "raise limits.max_topics on the server",
}

// hint says what to do about the refusal, where the server's code tells;
// a 429 from a server that gives none is taken for a per-address limit.
func (r *refusal) hint() string {
	if hint, ok := limitHints[r.code]; ok {
		return hint
	}
	if r.code == "" && r.status == http.StatusTooManyRequests {
		return "every benchmark client is on one address: raise the server's per-address limits"
	}
	return ""
}
