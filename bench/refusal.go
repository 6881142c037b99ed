package bench

import (
	"fmt"
	"net/http"

	"herald/app/client"
)

// refusal is a server's answer other than the one asked for: a handshake
// it did not switch to WebSocket, or a publish it did not acknowledge. It
// says what the server said and, where that names one of Herald's limits,
// the setting to raise.
type refusal struct{ client.Refusal }

// readRefusal reads a refusal from a response whose status is not the one
// asked for; it reads the body but leaves closing it to the caller.
func readRefusal(resp *http.Response) *refusal {
	return &refusal{*client.ReadRefusal(resp)}
}

func (r *refusal) Error() string {
	s := r.Refusal.Error()
	if r.RetryAfter > 0 {
		s += fmt.Sprintf(" (Retry-After: %.0f)", r.RetryAfter.Seconds())
	}
	if hint := r.hint(); hint != "" {
		s += "; " + hint
	}
	return s
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
	if hint, ok := limitHints[r.Code]; ok {
		return hint
	}
	if r.Code == "" && r.Status == http.StatusTooManyRequests {
		return "every benchmark client is on one address: raise the server's per-address limits"
	}
	return ""
}
