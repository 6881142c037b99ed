package main

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// BenchmarkFanOut measures the whole path: an HTTP publish, the hub, and a
// WebSocket text frame to every subscriber, read by real clients. One op is
// one message that every subscriber has received.
//
//	go test -run '^$' -bench FanOut .
func BenchmarkFanOut(b *testing.B) {
	for _, subscribers := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", subscribers), func(b *testing.B) {
			// A subscriber cut off as slow fails the benchmark. Every
			// client is on one address, past the per-address limit.
			h := startHerald(b, "limits:\n  publish_per_second: 0\n  max_connections_per_ip: 2000\n")
			var received sync.WaitGroup
			for range subscribers {
				conn := dial(b, h.ws("/ws"))
				received.Go(func() {
					for range b.N {
						if _, _, err := conn.ReadMessage(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			msg := strings.Repeat("x", 100)
			b.ResetTimer()
			for range b.N {
				if r := h.publish(b, msg); r.Subscribers != subscribers {
					b.Fatalf("message reached %d of %d subscribers", r.Subscribers, subscribers)
				}
			}
			received.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(b.N*subscribers)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
