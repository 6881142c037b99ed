package history

import (
	"testing"

	"herald/app"
)

// resume subscribes to topic from the message after since.
func resume(t *testing.T, hub *app.Hub, topic string, since uint64) *app.Subscriber {
	t.Helper()
	s, err := hub.Subscribe(app.SubscribeRequest{Topic: topic, Label: t.Name(), Resume: true, Since: since})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// commit is one topic's commit of messages.
func commit(messages []*app.Message, sequenceStart, keepFrom uint64) app.Commit {
	return app.Commit{Messages: messages, SequenceStart: sequenceStart, KeepFrom: keepFrom}
}
