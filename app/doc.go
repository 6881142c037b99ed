// Package app is Herald's domain, with nothing but the standard library:
// messages and the notices beside them, topics with their logs and id
// sequences, the Hub that owns every local subscriber, group commit to a
// history Store, the delivery step every transport shares, the Broker
// that numbers and shares messages (MemoryBroker for one instance), and
// Node, the edge's one way in.
//
// A message's path: Node.Publish hands it to the broker, which numbers it
// and gives it to the hub (Hub.Publish, or Hub.Accept for a shared
// broker). The hub appends it to its topic's log under the topic's lock
// and wakes each subscriber. Each subscriber's writer then takes what it
// is owed with Subscriber.Next, writes it, and settles it with Sent or
// Unsent. Storage, Redis, configuration and the wire live in packages of
// their own, which import this one.
package app
