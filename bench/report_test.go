package bench

import (
	"testing"
	"time"
)

// subscriberWith is a subscriber that received message i after micros[i]
// microseconds, or never when micros[i] is negative.
func subscriberWith(micros ...int) *subscriber {
	s := newSubscriber(nil, nil, len(micros), 0, 1)
	for seq, m := range micros {
		if m >= 0 {
			s.latency[seq] = uint32(m) + 1
			s.arrival[seq] = uint32(m) + 1
			s.distinct++
		}
	}
	return s
}

func TestSummariseFindsEachMessagesFirstAndLastDelivery(t *testing.T) {
	subs := []*subscriber{
		subscriberWith(100, 50, 1000, -1, 0),
		subscriberWith(300, -1, 1000, -1, 7),
		subscriberWith(200, 400, 1000, -1, 9),
	}
	r := &Report{Subscribers: len(subs), Messages: 5}
	r.summarise(subs, []bool{true, true, true, true, true}, time.Now(), time.Second)

	if r.Delivered != 11 || r.Lost != 4 {
		t.Errorf("delivered=%d lost=%d, want 11 and 4 (one missed by one subscriber, one by all three)", r.Delivered, r.Lost)
	}
	// Per message, first deliveries are 100, 50, 1000 and 0 µs, and last
	// ones 300, 400, 1000 and 9 µs; the message nobody got has neither.
	for name, got := range map[string][2]float64{
		"first p50": {r.FirstDeliveryP50Millis, 0.100},
		"first p99": {r.FirstDeliveryP99Millis, 1.000},
		"last p50":  {r.LastDeliveryP50Millis, 0.400},
		"last p99":  {r.LastDeliveryP99Millis, 1.000},
		"max":       {r.LatencyMaxMillis, 1.000},
	} {
		if got[0] != got[1] {
			t.Errorf("%s = %.3f ms, want %.3f", name, got[0], got[1])
		}
	}
}

func TestALatencyOfZeroIsADelivery(t *testing.T) {
	s := subscriberWith(0, -1)
	if micros, _, seen := s.latencyOf(0); !seen || micros != 0 {
		t.Errorf("message 0: %d µs, seen=%v; want 0 µs, seen", micros, seen)
	}
	if _, _, seen := s.latencyOf(1); seen {
		t.Error("message 1 counts as seen, but never arrived")
	}
}

func TestPayloadsRoundTripAndOthersAreForeign(t *testing.T) {
	sent := time.Unix(0, 1795629935815044123)
	seq, at, ok := decodePayload(encodePayload(42, sent, 64))
	if !ok || seq != 42 || !at.Equal(sent) {
		t.Errorf("decoded %d, %v, %v; want 42, %v, true", seq, at, ok, sent)
	}
	for _, foreign := range []string{
		"HelloWorld",
		"000000004x 1795629935815044123 xxxxxxxx", // not a number
		"0000000042-1795629935815044123 xxxxxxxx", // no separator
		"0000000042 1795629935815044123",          // too short
	} {
		if _, _, ok := decodePayload([]byte(foreign)); ok {
			t.Errorf("%q decoded as a benchmark payload", foreign)
		}
	}
}

func TestEachTopicGetsEveryNthMessage(t *testing.T) {
	for messages := 1; messages <= 20; messages++ {
		for topics := 1; topics <= 7; topics++ {
			for topic := range topics {
				want := 0
				for seq := range messages {
					if seq%topics == topic {
						want++
					}
				}
				if got := messagesOf(messages, topic, topics); got != want {
					t.Errorf("%d messages over %d topics: topic %d gets %d, want %d", messages, topics, topic, got, want)
				}
			}
		}
	}
}
