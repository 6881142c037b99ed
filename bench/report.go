package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"time"
)

// Report is what one run measured. Fields are printed in order, as
// key=value lines named by their json tags.
type Report struct {
	Subscribers      int     `json:"subscribers"`
	Messages         int     `json:"messages"`
	ConnectSeconds   float64 `json:"connect_seconds"`
	Acknowledged     int     `json:"acknowledged"`
	PublishFailures  int     `json:"publish_failures"`
	Expected         int     `json:"expected_deliveries"`
	Delivered        int     `json:"delivered"`
	Lost             int     `json:"lost"`
	Duplicated       int     `json:"duplicated"`
	Foreign          int     `json:"foreign_frames"`
	PublishSeconds   float64 `json:"publish_seconds"`
	DeliverySeconds  float64 `json:"delivery_seconds"`
	DeliveriesPerSec float64 `json:"deliveries_per_second"`
	LatencyP50Millis float64 `json:"latency_p50_ms"`
	LatencyP90Millis float64 `json:"latency_p90_ms"`
	LatencyP99Millis float64 `json:"latency_p99_ms"`
	LatencyMaxMillis float64 `json:"latency_max_ms"`
	// For each message, the latency of its first and of its last delivery
	// among the subscribers: where a fan-out's time goes, in starting it or
	// in going round.
	FirstDeliveryP50Millis     float64 `json:"first_delivery_p50_ms"`
	FirstDeliveryP99Millis     float64 `json:"first_delivery_p99_ms"`
	LastDeliveryP50Millis      float64 `json:"last_delivery_p50_ms"`
	LastDeliveryP99Millis      float64 `json:"last_delivery_p99_ms"`
	ServerCPUSeconds           float64 `json:"server_cpu_seconds"`
	ServerCPUMicrosPerDelivery float64 `json:"server_cpu_us_per_delivery"`
	ServerRSSKiB               int64   `json:"server_rss_kib"`
	RSSPerConnectionKiB        float64 `json:"server_rss_per_connection_kib"`
}

// summarise counts deliveries against the acknowledged messages.
func (r *Report) summarise(subs []*subscriber, acked []bool, start time.Time, publishTime time.Duration) {
	for _, ok := range acked {
		if ok {
			r.Acknowledged++
		}
	}
	r.PublishFailures = len(acked) - r.Acknowledged
	r.Expected = r.Acknowledged * len(subs)
	r.Lost += (r.Subscribers - len(subs)) * r.Acknowledged // never connected
	latencies := make([]uint32, 0, r.Expected)
	firsts := make([]uint32, len(acked)) // per message; 0 until delivered
	lasts := make([]uint32, len(acked))
	var last time.Time
	for _, s := range subs {
		r.Delivered += s.distinct
		r.Duplicated += s.dupes
		r.Foreign += s.foreign
		for seq, ok := range acked {
			latency, seen := s.latencyOf(seq)
			if ok && !seen {
				r.Lost++
			}
			if !seen {
				continue
			}
			latencies = append(latencies, latency)
			if firsts[seq] == 0 || latency+1 < firsts[seq] {
				firsts[seq] = latency + 1
			}
			lasts[seq] = max(lasts[seq], latency+1)
		}
		if s.lastAt.After(last) {
			last = s.lastAt
		}
	}
	r.PublishSeconds = publishTime.Seconds()
	if !last.IsZero() {
		r.DeliverySeconds = last.Sub(start).Seconds()
		r.DeliveriesPerSec = float64(r.Delivered) / r.DeliverySeconds
	}
	slices.Sort(latencies)
	r.LatencyP50Millis = percentile(latencies, 0.50)
	r.LatencyP90Millis = percentile(latencies, 0.90)
	r.LatencyP99Millis = percentile(latencies, 0.99)
	r.LatencyMaxMillis = percentile(latencies, 1)
	firsts, lasts = delivered(firsts), delivered(lasts)
	slices.Sort(firsts)
	slices.Sort(lasts)
	r.FirstDeliveryP50Millis = percentile(firsts, 0.50)
	r.FirstDeliveryP99Millis = percentile(firsts, 0.99)
	r.LastDeliveryP50Millis = percentile(lasts, 0.50)
	r.LastDeliveryP99Millis = percentile(lasts, 0.99)
}

// delivered turns per-message latencies kept plus one, with 0 for a
// message nobody got, into the latencies of the messages that arrived.
func delivered(perMessage []uint32) []uint32 {
	out := perMessage[:0]
	for _, v := range perMessage {
		if v > 0 {
			out = append(out, v-1)
		}
	}
	return out
}

// percentile is the value at rank q of sorted microseconds, in milliseconds.
func percentile(sorted []uint32, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(q*float64(len(sorted))), len(sorted)-1)
	return float64(sorted[i]) / 1000
}

// write prints the report as key=value lines, or as JSON.
func (r *Report) write(w io.Writer, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(r)
	}
	v := reflect.ValueOf(*r)
	for i := range v.NumField() {
		key := v.Type().Field(i).Tag.Get("json")
		var value string
		switch f := v.Field(i); f.Kind() {
		case reflect.Float64:
			value = strconv.FormatFloat(f.Float(), 'f', 3, 64)
		default:
			value = fmt.Sprint(f.Interface())
		}
		if _, err := fmt.Fprintf(w, "%s=%s\n", key, value); err != nil {
			return err
		}
	}
	return nil
}
