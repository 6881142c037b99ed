package handlers

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"herald/app"
)

// sseWriter frames deliveries as Server-Sent Events into a buffer, and
// writes each batch of events with a deadline of its own.
type sseWriter struct {
	response     *echo.Response
	control      *http.ResponseController
	writeTimeout time.Duration
	json         bool
	interrupted  atomic.Bool // writes fail at once
	buf          bytes.Buffer
}

var errStreamInterrupted = errors.New("event stream interrupted: subscriber too slow")

// addDelivery adds d's notices, then its messages.
func (w *sseWriter) addDelivery(d *app.Delivery) {
	for _, n := range d.Notices {
		w.addNotice(n)
	}
	for _, m := range d.Messages {
		w.addMessage(m)
	}
}

// addMessage adds m as one event: its id, then its text as data lines, or
// its JSON as one data line.
func (w *sseWriter) addMessage(m *app.Message) {
	w.buf.WriteString("id: ")
	w.buf.WriteString(strconv.FormatUint(m.ID, 10))
	w.buf.WriteByte('\n')
	if w.json {
		w.data(m.JSON())
	} else {
		w.text(m.Text)
	}
	w.buf.WriteByte('\n')
}

// addNotice adds a notice as an event named by its kind; such events have
// no id, so they leave an EventSource's Last-Event-ID where it was.
func (w *sseWriter) addNotice(n app.Notice) {
	w.buf.WriteString("event: " + string(n.Kind) + "\n")
	w.data(n.JSON)
	w.buf.WriteByte('\n')
}

// text adds one data line per line of s. SSE ends a line at CRLF, CR or LF
// and the client joins data lines with LF, so each line break arrives as LF.
func (w *sseWriter) text(s string) {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	for line := range strings.SplitSeq(s, "\n") {
		w.buf.WriteString("data: ")
		w.buf.WriteString(line)
		w.buf.WriteByte('\n')
	}
}

func (w *sseWriter) data(b []byte) {
	w.buf.WriteString("data: ")
	w.buf.Write(b)
	w.buf.WriteByte('\n')
}

func (w *sseWriter) addKeepalive() { w.comment("heartbeat") }

func (w *sseWriter) pending() bool { return w.buf.Len() > 0 }

// comment adds a comment line, which clients ignore and proxies see as
// traffic.
func (w *sseWriter) comment(text string) {
	w.buf.WriteString(": " + text + "\n\n")
}

// flush writes what is buffered and pushes it to the client.
func (w *sseWriter) flush() error {
	if err := w.control.SetWriteDeadline(time.Now().Add(w.writeTimeout)); err != nil {
		return err
	}
	// Checked after the deadline is set, as deadlineConn.Write does.
	if w.interrupted.Load() {
		return errStreamInterrupted
	}
	_, err := w.response.Write(w.buf.Bytes())
	w.buf.Reset()
	if err != nil {
		return err
	}
	return w.control.Flush()
}

// interrupt fails the write in progress and every later one.
func (w *sseWriter) interrupt() {
	w.interrupted.Store(true)
	_ = w.control.SetWriteDeadline(time.Now())
}
