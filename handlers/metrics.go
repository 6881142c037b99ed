package handlers

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"herald/app"
	"herald/app/push"
	"herald/handlers/ws"
)

// topicLabelLimit bounds herald_topic_subscribers: the busiest topics get
// their own series and the rest are summed under otherTopics, so made-up
// topic names cannot blow up a Prometheus server.
const topicLabelLimit = 50

// otherTopics labels the sum of the topics past topicLabelLimit. It cannot
// be a topic name.
const otherTopics = "(other)"

// Transports, as the herald_connections label names them.
const (
	transportWebSocket = "websocket"
	transportSSE       = "sse"
)

// metrics holds Herald's Prometheus metrics, in a registry of its own.
// Most are read from the hub when Prometheus scrapes, so that the domain
// knows nothing of Prometheus.
type metrics struct {
	registry    *prometheus.Registry
	connections *prometheus.GaugeVec
	// disconnect holds each transport's gauge decrement, bound once
	// rather than once per connection.
	disconnect map[string]func()
}

func newMetrics(node *app.Node) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_connections",
			Help: "Open subscriber connections, by transport.",
		}, []string{"transport"}),
	}
	// Both transports show from the start, at 0.
	m.disconnect = map[string]func(){}
	for _, transport := range []string{transportWebSocket, transportSSE} {
		m.disconnect[transport] = m.connections.WithLabelValues(transport).Dec
	}
	m.registry.MustRegister(
		m.connections,
		&nodeCollector{node: node},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// watchEngine counts the WebSocket sends that io_uring carried.
func (m *metrics) watchEngine(engine *ws.Server) {
	m.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "herald_websocket_io_uring_sends_total",
		Help: "Writes to WebSocket connections sent through io_uring, many to one system call (websocket.io_uring).",
	}, func() float64 { return float64(engine.RingSends()) }))
}

// connected counts a connection until the returned func is called.
func (m *metrics) connected(transport string) (disconnected func()) {
	m.connections.WithLabelValues(transport).Inc()
	return m.disconnect[transport]
}

// nodeCollector reads the node's counters when Prometheus scrapes, so the
// domain knows nothing of Prometheus.
type nodeCollector struct {
	node *app.Node
}

var (
	subscribersDesc = prometheus.NewDesc("herald_subscribers",
		"Live subscriptions over every transport.", nil, nil)
	topicsDesc = prometheus.NewDesc("herald_topics",
		"Topics held: with subscribers or kept history.", nil, nil)
	topicSubscribersDesc = prometheus.NewDesc("herald_topic_subscribers",
		"Subscribers per topic, for the busiest topics; the rest are summed under topic=\"(other)\".", []string{"topic"}, nil)
	publishedDesc = prometheus.NewDesc("herald_messages_published_total",
		"Messages accepted by a publish.", nil, nil)
	deliveredDesc = prometheus.NewDesc("herald_messages_delivered_total",
		"Messages published to a subscriber, counted per subscriber.", nil, nil)
	droppedDesc = prometheus.NewDesc("herald_messages_dropped_total",
		"Messages published to a subscriber but never written to it (each is also logged).", nil, nil)
	slowDesc = prometheus.NewDesc("herald_slow_subscriber_disconnects_total",
		"Subscribers cut off as too slow: too far behind in bytes, or a write that took no data for the write timeout.", nil, nil)
	brokerErrorsDesc = prometheus.NewDesc("herald_broker_errors_total",
		"Failures of the history store or of Redis: publishes refused, sweeps that failed, commands that failed.", nil, nil)
	brokerUpDesc = prometheus.NewDesc("herald_broker_up",
		"1 while the broker answers (always, for the memory broker), 0 while Redis is out of reach.", nil, nil)
	latencyDesc = prometheus.NewDesc("herald_delivery_latency_seconds",
		"Time from a publish being accepted to its message being written to a live subscriber.", nil, nil)
)

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{subscribersDesc, topicsDesc, topicSubscribersDesc,
		publishedDesc, deliveredDesc, droppedDesc, slowDesc, brokerErrorsDesc, brokerUpDesc, latencyDesc} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	stats := c.node.Stats()
	ch <- prometheus.MustNewConstMetric(subscribersDesc, prometheus.GaugeValue, float64(stats.Subscribers))
	ch <- prometheus.MustNewConstMetric(topicsDesc, prometheus.GaugeValue, float64(stats.Topics))
	ch <- prometheus.MustNewConstMetric(publishedDesc, prometheus.CounterValue, float64(stats.Published))
	ch <- prometheus.MustNewConstMetric(deliveredDesc, prometheus.CounterValue, float64(stats.Delivered))
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(stats.Dropped))
	ch <- prometheus.MustNewConstMetric(slowDesc, prometheus.CounterValue, float64(stats.SlowDisconnects))
	brokerErrors, brokerUp := stats.StoreErrors, true
	if b := stats.Broker; b != nil {
		brokerErrors += b.Errors
		brokerUp = b.Up
	}
	ch <- prometheus.MustNewConstMetric(brokerErrorsDesc, prometheus.CounterValue, float64(brokerErrors))
	up := 0.0
	if brokerUp {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(brokerUpDesc, prometheus.GaugeValue, up)
	buckets := make(map[float64]uint64, len(app.LatencyBounds))
	for i, bound := range app.LatencyBounds {
		buckets[bound] = stats.Latency.Cumulative[i]
	}
	ch <- prometheus.MustNewConstHistogram(latencyDesc, stats.Latency.Count, stats.Latency.Sum, buckets)

	type topicCount struct {
		topic string
		n     int
	}
	var counts []topicCount
	for topic, n := range c.node.TopicSubscribers() {
		counts = append(counts, topicCount{topic, n})
	}
	slices.SortFunc(counts, func(a, b topicCount) int {
		return cmp.Or(cmp.Compare(b.n, a.n), cmp.Compare(a.topic, b.topic))
	})
	other := 0
	for i, tc := range counts {
		if i >= topicLabelLimit {
			other += tc.n
			continue
		}
		ch <- prometheus.MustNewConstMetric(topicSubscribersDesc, prometheus.GaugeValue, float64(tc.n), tc.topic)
	}
	if len(counts) > topicLabelLimit {
		ch <- prometheus.MustNewConstMetric(topicSubscribersDesc, prometheus.GaugeValue, float64(other), otherTopics)
	}
}

// pushCountTimeout bounds reading the number of push subscriptions when
// Prometheus scrapes: with Redis, it is a command.
const pushCountTimeout = 2 * time.Second

// watchPush shows what Web Push does.
func (m *metrics) watchPush(service *push.Service, log *slog.Logger) {
	m.registry.MustRegister(&pushCollector{service: service, log: log})
}

// pushCollector reads Web Push's counters when Prometheus scrapes.
type pushCollector struct {
	service *push.Service
	log     *slog.Logger
}

var (
	pushSentDesc = prometheus.NewDesc("herald_push_sent_total",
		"Pushes that a push service took, one per browser.", nil, nil)
	pushFailedDesc = prometheus.NewDesc("herald_push_failed_total",
		"Pushes given up on: refused, unanswered, or still refused after the retries (each is logged).", nil, nil)
	pushRemovedDesc = prometheus.NewDesc("herald_push_removed_total",
		"Push subscriptions removed because their push service said they are gone (404 or 410).", nil, nil)
	pushDroppedDesc = prometheus.NewDesc("herald_push_dropped_total",
		"Messages not pushed at all: the push queue was full, the server stopped first, or their subscriptions could not be read (each is logged).", nil, nil)
	pushQueueDesc = prometheus.NewDesc("herald_push_queue_depth",
		"Messages waiting to be pushed.", nil, nil)
	pushSubscriptionsDesc = prometheus.NewDesc("herald_push_subscriptions",
		"Browsers registered for push, to every topic; with Redis, on every instance.", nil, nil)
)

// Describe names every push metric.
func (c *pushCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{pushSentDesc, pushFailedDesc, pushRemovedDesc, pushDroppedDesc, pushQueueDesc, pushSubscriptionsDesc} {
		ch <- d
	}
}

// Collect reads the push metrics as they stand.
func (c *pushCollector) Collect(ch chan<- prometheus.Metric) {
	stats := c.service.Stats()
	ch <- prometheus.MustNewConstMetric(pushSentDesc, prometheus.CounterValue, float64(stats.Sent))
	ch <- prometheus.MustNewConstMetric(pushFailedDesc, prometheus.CounterValue, float64(stats.Failed))
	ch <- prometheus.MustNewConstMetric(pushRemovedDesc, prometheus.CounterValue, float64(stats.Removed))
	ch <- prometheus.MustNewConstMetric(pushDroppedDesc, prometheus.CounterValue, float64(stats.Dropped))
	ch <- prometheus.MustNewConstMetric(pushQueueDesc, prometheus.GaugeValue, float64(stats.QueueDepth))
	ctx, cancel := context.WithTimeout(context.Background(), pushCountTimeout)
	defer cancel()
	n, err := c.service.Subscriptions(ctx)
	if err != nil {
		c.log.Warn("metrics: push subscriptions could not be counted", "err", err)
		return // the series is missing from this scrape, rather than wrong
	}
	ch <- prometheus.MustNewConstMetric(pushSubscriptionsDesc, prometheus.GaugeValue, float64(n))
}
