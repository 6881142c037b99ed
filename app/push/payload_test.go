package push

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func decodePayload(t *testing.T, b []byte) payload {
	t.Helper()
	var p payload
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("payload %q: %v", b, err)
	}
	return p
}

// A message that fits is whole; one that does not keeps the longest start
// that fits, cut between characters, with the marker.
func TestPayloadIsCutToFitAPush(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 7, 18, 0, 0, 123, time.UTC)
	whole := Payload(Message{Topic: "news", ID: 17, Text: "", Time: at})
	room := MaxPayloadBytes - len(whole) // for text that needs no escapes
	for _, tc := range []struct {
		name      string
		givenText string
		expectCut bool
	}{
		{"givenShortText", "Extra <b>&</b>", false},
		{"givenTextThatJustFits", strings.Repeat("x", room), false},
		{"givenOneByteMore", strings.Repeat("x", room+1), true},
		{"givenManyEscapes", strings.Repeat("\"\n\\", 2000), true},
		{"givenControlCharacters", strings.Repeat("\x01", 1000), true},
		{"givenManyByteCharacters", strings.Repeat("é🚀", 1000), true},
		{"givenAHugeMessage", strings.Repeat("a", 1<<20), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := Payload(Message{Topic: "news", ID: 17, Text: tc.givenText, Time: at})
			if len(b) > MaxPayloadBytes {
				t.Fatalf("the payload is %d bytes, over %d", len(b), MaxPayloadBytes)
			}
			p := decodePayload(t, b)
			if p.Topic != "news" || p.ID != "17" || p.Time != "2026-12-07T18:00:00.000000123Z" || p.Cut != tc.expectCut {
				t.Errorf("payload %+v", p)
			}
			if !tc.expectCut {
				if p.Text != tc.givenText {
					t.Errorf("text %q, want it whole", p.Text)
				}
				return
			}
			kept, marked := strings.CutSuffix(p.Text, CutMarker)
			if !marked || !strings.HasPrefix(tc.givenText, kept) || !utf8.ValidString(kept) {
				t.Fatalf("text %q is not a start of the message with the marker", p.Text)
			}
			// One more character would not have fitted.
			_, size := utf8.DecodeRuneInString(tc.givenText[len(kept):])
			p.Text = tc.givenText[:len(kept)+size] + CutMarker
			if longer := encodePayload(p); len(longer) <= MaxPayloadBytes {
				t.Errorf("kept %d bytes of text, but %d fit", len(kept), len(kept)+size)
			}
		})
	}
}
