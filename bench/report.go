package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Report is what one run measured. Fields are printed in order, as
// key=value lines named by their json tags.
type Report struct {
	Subscribers     int     `json:"subscribers"`
	Messages        int     `json:"messages"`
	Topics          int     `json:"topics"`
	ConnectSeconds  float64 `json:"connect_seconds"`
	Acknowledged    int     `json:"acknowledged"`
	PublishFailures int     `json:"publish_failures"`
	// Why the first publish that failed did: the server's status and
	// reason, or the error that kept it from answering.
	FirstPublishError string `json:"first_publish_error"`
	Expected          int    `json:"expected_deliveries"`
	Delivered         int    `json:"delivered"`
	Lost              int    `json:"lost"`
	Duplicated        int    `json:"duplicated"`
	Foreign           int    `json:"foreign_frames"`
	// Subscribers whose reading failed or whose server closed them before
	// every message came, and the first one's reason.
	ReadErrors       int     `json:"read_errors"`
	FirstReadError   string  `json:"first_read_error"`
	PublishSeconds   float64 `json:"publish_seconds"`
	DeliverySeconds  float64 `json:"delivery_seconds"`
	DeliveriesPerSec float64 `json:"deliveries_per_second"`
	// Latency is from the publisher's send time until a subscriber read the
	// message.
	LatencyP50Millis float64 `json:"latency_p50_ms"`
	LatencyP90Millis float64 `json:"latency_p90_ms"`
	LatencyP99Millis float64 `json:"latency_p99_ms"`
	LatencyMaxMillis float64 `json:"latency_max_ms"`
	// For each message, the latency of its first and of its last delivery
	// among the subscribers: where a fan-out's time goes, in starting it or
	// in going round.
	FirstDeliveryP50Millis float64 `json:"first_delivery_p50_ms"`
	FirstDeliveryP99Millis float64 `json:"first_delivery_p99_ms"`
	LastDeliveryP50Millis  float64 `json:"last_delivery_p50_ms"`
	LastDeliveryP99Millis  float64 `json:"last_delivery_p99_ms"`
	// Arrival is from the send time until the subscriber's kernel received
	// the message, as SO_TIMESTAMPNS tells it: the server's latency without
	// the time the message then waits for the load generator to read it.
	// ArrivalClock is "kernel" when every subscriber had those timestamps,
	// and "read" when some did not (wss://, or not Linux), in which case the
	// arrival figures count the read time instead.
	ArrivalClock                  string  `json:"arrival_clock"`
	ArrivalP50Millis              float64 `json:"arrival_p50_ms"`
	ArrivalP99Millis              float64 `json:"arrival_p99_ms"`
	ArrivalMaxMillis              float64 `json:"arrival_max_ms"`
	ArrivalFirstDeliveryP50Millis float64 `json:"arrival_first_delivery_p50_ms"`
	ArrivalLastDeliveryP50Millis  float64 `json:"arrival_last_delivery_p50_ms"`
	ArrivalLastDeliveryP99Millis  float64 `json:"arrival_last_delivery_p99_ms"`
	// The server's figures are measured only given its pid, and left out
	// of the report otherwise.
	ServerCPUSeconds           *float64 `json:"server_cpu_seconds,omitempty"`
	ServerCPUMicrosPerDelivery *float64 `json:"server_cpu_us_per_delivery,omitempty"`
	// The server's CPU time while the subscribers connected, per
	// connection; /proc counts in 10 ms ticks, so it needs thousands.
	ServerConnectCPUMicrosPerConnection *float64 `json:"server_connect_cpu_us_per_connection,omitempty"`
	ServerRSSKiB                        *int64   `json:"server_rss_kib,omitempty"`
	RSSPerConnectionKiB                 *float64 `json:"server_rss_per_connection_kib,omitempty"`
	// How busy the load generator kept its core over the same span as the
	// server's CPU time (loadMeter): near 1 it is saturated, and the latency
	// it measures includes its own queue, which the arrival figures do not.
	LoadCPUBusy float64 `json:"load_cpu_busy"`
}

// summarise counts each subscriber's deliveries against the acknowledged
// messages of its topic.
func (r *Report) summarise(subs []*subscriber, acked []bool, start time.Time, publishTime time.Duration) {
	for _, ok := range acked {
		if ok {
			r.Acknowledged++
		}
	}
	r.PublishFailures = len(acked) - r.Acknowledged
	for _, s := range subs {
		for seq, ok := range acked {
			if ok && s.expects(seq) {
				r.Expected++
			}
		}
	}
	read := newLatencies(r.Expected, len(acked))
	arrival := newLatencies(r.Expected, len(acked))
	r.ArrivalClock = "kernel"
	var last time.Time
	for _, s := range subs {
		r.Delivered += s.distinct
		r.Duplicated += s.dupes
		r.Foreign += s.foreign
		if s.err != nil {
			if r.ReadErrors == 0 {
				r.FirstReadError = s.err.Error()
			}
			r.ReadErrors++
		}
		if !s.kernel {
			r.ArrivalClock = "read"
		}
		for seq, ok := range acked {
			if !s.expects(seq) {
				continue
			}
			readMicros, arrivalMicros, seen := s.latencyOf(seq)
			if ok && !seen {
				r.Lost++
			}
			if seen {
				read.add(seq, readMicros)
				arrival.add(seq, arrivalMicros)
			}
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
	read.sort()
	arrival.sort()
	r.LatencyP50Millis = percentile(read.all, 0.50)
	r.LatencyP90Millis = percentile(read.all, 0.90)
	r.LatencyP99Millis = percentile(read.all, 0.99)
	r.LatencyMaxMillis = percentile(read.all, 1)
	r.FirstDeliveryP50Millis = percentile(read.firsts, 0.50)
	r.FirstDeliveryP99Millis = percentile(read.firsts, 0.99)
	r.LastDeliveryP50Millis = percentile(read.lasts, 0.50)
	r.LastDeliveryP99Millis = percentile(read.lasts, 0.99)
	r.ArrivalP50Millis = percentile(arrival.all, 0.50)
	r.ArrivalP99Millis = percentile(arrival.all, 0.99)
	r.ArrivalMaxMillis = percentile(arrival.all, 1)
	r.ArrivalFirstDeliveryP50Millis = percentile(arrival.firsts, 0.50)
	r.ArrivalLastDeliveryP50Millis = percentile(arrival.lasts, 0.50)
	r.ArrivalLastDeliveryP99Millis = percentile(arrival.lasts, 0.99)
}

// latencies gathers one clock's latencies in microseconds: every delivery,
// and each message's first and last. Per message they are kept plus one,
// with 0 for a message nobody got, until sort.
type latencies struct {
	all           []uint32
	firsts, lasts []uint32
}

func newLatencies(deliveries, messages int) *latencies {
	return &latencies{
		all:    make([]uint32, 0, deliveries),
		firsts: make([]uint32, messages),
		lasts:  make([]uint32, messages),
	}
}

func (l *latencies) add(seq int, micros uint32) {
	l.all = append(l.all, micros)
	if l.firsts[seq] == 0 || micros+1 < l.firsts[seq] {
		l.firsts[seq] = micros + 1
	}
	l.lasts[seq] = max(l.lasts[seq], micros+1)
}

// sort leaves each list sorted, the per-message ones holding only the
// messages that arrived.
func (l *latencies) sort() {
	l.firsts, l.lasts = delivered(l.firsts), delivered(l.lasts)
	slices.Sort(l.all)
	slices.Sort(l.firsts)
	slices.Sort(l.lasts)
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

// write prints the report as key=value lines, or as JSON. Figures not
// measured (nil) are left out of both.
func (r *Report) write(w io.Writer, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(r)
	}
	v := reflect.ValueOf(*r)
	for i := range v.NumField() {
		key, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		f := v.Field(i)
		if f.Kind() == reflect.Pointer {
			if f.IsNil() {
				continue
			}
			f = f.Elem()
		}
		var value string
		switch f.Kind() {
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
