package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"herald/app"
	"herald/app/redistest"
)

// clusterOptions reach the cluster c, with room in each topic's stream for
// every message a test publishes.
func clusterOptions(c *redistest.Cluster) Options {
	return Options{Addrs: c.Addrs(), HistorySize: 1000}
}

// outcomes are the answers a publisher got, by text.
type outcomes struct {
	mu           sync.Mutex
	acknowledged []*app.Message // in the order they were answered
	refused      map[string]bool
	unknown      map[string]bool
}

// publishUntil publishes "m0", "m1", ... to topic through b, one after the
// other, until stop is closed, and tells progress each time one is
// acknowledged.
func publishUntil(b *Broker, topic string, stop <-chan struct{}, progress chan<- int) *outcomes {
	o := &outcomes{refused: map[string]bool{}, unknown: map[string]bool{}}
	var done sync.WaitGroup
	done.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			text := fmt.Sprintf("m%d", i)
			m, _, err := b.Publish(context.Background(), topic, text)
			o.mu.Lock()
			switch {
			case err == nil:
				o.acknowledged = append(o.acknowledged, m)
			case errors.Is(err, app.ErrPublishUnknown):
				o.unknown[text] = true
			default:
				o.refused[text] = true
			}
			acknowledged := len(o.acknowledged)
			o.mu.Unlock()
			if err == nil {
				select {
				case progress <- acknowledged:
				default:
				}
			}
		}
	})
	go func() { <-stop; done.Wait() }()
	return o
}

// checkDelivered fails unless got holds every acknowledged message once,
// with its id, in order, no refused one, and unknown ones at most once.
func (o *outcomes) checkDelivered(t *testing.T, name string, got []*app.Message) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	seen := map[string]int{}
	next := 0
	for i, m := range got {
		seen[m.Text]++
		if i > 0 && m.ID <= got[i-1].ID {
			t.Errorf("%s: id %d came after %d", name, m.ID, got[i-1].ID)
		}
		if next < len(o.acknowledged) && m.Text == o.acknowledged[next].Text {
			if m.ID != o.acknowledged[next].ID {
				t.Errorf("%s: %q has id %d, its receipt said %d", name, m.Text, m.ID, o.acknowledged[next].ID)
			}
			next++
		}
	}
	if next != len(o.acknowledged) {
		t.Errorf("%s: acknowledged message %q (%d of %d) is missing or out of order; got %s",
			name, o.acknowledged[next].Text, next+1, len(o.acknowledged), texts(got))
	}
	for text, n := range seen {
		switch {
		case o.refused[text] && n > 0:
			t.Errorf("%s: refused message %q was delivered", name, text)
		case n > 1:
			t.Errorf("%s: %q was delivered %d times", name, text, n)
		}
	}
}

// TestClusterFollowsATopicWhoseSlotMoves: a topic's slot moves to another
// master while a publisher publishes to it without a pause. The
// subscribers of both instances follow the topic's channel to its new
// master, and get every acknowledged message once, in order, and none
// that was refused.
func TestClusterFollowsATopicWhoseSlotMoves(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	a, b := startTestBroker(t, clusterOptions(c)), startTestBroker(t, clusterOptions(c))
	const topic = "moving"
	onA, onB := subscribeVia(t, a, topic), subscribeVia(t, b, topic)
	channel := a.channelOf(topic)
	from := c.MasterOf(t, channel)
	if a.topicKey(topic, "seq") != "herald:topic:{moving}:seq" || c.MasterOf(t, "herald:topic:{moving}:log") != from {
		t.Fatalf("the topic's keys do not share its channel's slot")
	}

	stop, progress := make(chan struct{}), make(chan int, 1)
	published := publishUntil(a, topic, stop, progress)
	for acknowledged := 0; acknowledged < 20; acknowledged = <-progress {
	}
	var to string
	for _, addr := range c.Addrs() {
		if addr != from {
			to = addr
		}
	}
	c.MoveSlot(t, channel, to)
	published.mu.Lock()
	before := len(published.acknowledged)
	published.mu.Unlock()
	for acknowledged := before; acknowledged < before+20; acknowledged = <-progress {
	}
	close(stop)
	publishVia(t, a, topic, "end")

	for name, s := range map[string]*app.Subscriber{"the publishing instance": onA, "the other instance": onB} {
		got := awaitText(t, s, "end")
		published.checkDelivered(t, name, got[:len(got)-1])
		if s.Gap() != nil {
			t.Errorf("%s: told of a gap: %+v", name, s.Gap())
		}
	}
	// Redis answered throughout: a slot that moves is no outage, which
	// would tell every subscriber that the broker went away.
	for name, broker := range map[string]*Broker{"the publishing instance": a, "the other instance": b} {
		if stats := broker.Stats(); !stats.Up || stats.Errors != 0 {
			t.Errorf("%s counted the move as %d Redis failures (up: %v)", name, stats.Errors, stats.Up)
		}
	}
	var newMaster *redistest.Server
	for _, n := range c.Nodes {
		if n.Addr() == to {
			newMaster = n
		}
	}
	counts, err := newMaster.Client(t).PubSubShardNumSub(context.Background(), channel).Result()
	if err != nil {
		t.Fatal(err)
	}
	if counts[channel] != 2 {
		t.Errorf("the topic's channel has %d subscribers on its new master, want 2 (one per instance)", counts[channel])
	}
}

// TestClusterSubscriptionsComeBackAfterAMasterRestarts: a master that
// holds several topics' slots is killed and starts again on its data.
// Each instance subscribes again to those topics' channels, one by one
// (Redis refuses one subscription to channels of several slots), and
// reads what it missed from their streams.
func TestClusterSubscriptionsComeBackAfterAMasterRestarts(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	a, b := startTestBroker(t, clusterOptions(c)), startTestBroker(t, clusterOptions(c))
	byMaster := map[string][]string{}
	for i := 0; len(byMaster[c.Nodes[0].Addr()]) < 3; i++ {
		topic := fmt.Sprintf("t%d", i)
		addr := c.MasterOf(t, a.channelOf(topic))
		byMaster[addr] = append(byMaster[addr], topic)
	}
	topics := byMaster[c.Nodes[0].Addr()]
	subscribers := map[string]*app.Subscriber{}
	for _, topic := range topics {
		subscribers[topic] = subscribeVia(t, b, topic)
		publishVia(t, a, topic, "before")
	}

	c.Nodes[0].Kill(t)
	c.Nodes[0].Restart(t)
	c.Nodes[0].AwaitLog(t, "Cluster state changed: ok")
	for _, topic := range topics {
		publishVia(t, a, topic, "after")
	}
	for _, topic := range topics {
		got := awaitText(t, subscribers[topic], "after")
		if len(got) != 2 || got[0].Text != "before" || got[1].ID != got[0].ID+1 {
			t.Errorf("the subscriber to %s got %s, want before, then after", topic, texts(got))
		}
	}
}
