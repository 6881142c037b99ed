package bench

import "sync"

// reading is every subscriber being read until it has all its topic's messages,
// its connection ends, or stop: most of them by poll groups (Linux), the
// rest by a goroutine each.
type reading struct {
	groups []*pollGroup
	alone  []*subscriber
	done   chan struct{} // closed once no subscriber is being read
}

func startReading(subs []*subscriber) *reading {
	r := &reading{done: make(chan struct{})}
	r.groups, r.alone = newPollGroups(subs)
	var readers sync.WaitGroup
	for _, g := range r.groups {
		readers.Go(g.run)
	}
	for _, s := range r.alone {
		readers.Go(s.read)
	}
	go func() { readers.Wait(); close(r.done) }()
	return r
}

// stop ends the reading of the subscribers still waiting, without an
// error against them, and closes every connection once every reader has
// stopped.
func (r *reading) stop() {
	for _, g := range r.groups {
		g.stop()
	}
	for _, s := range r.alone {
		s.conn.Close()
	}
	<-r.done
	for _, g := range r.groups {
		g.closeSockets()
	}
}
