package app

// topicLog holds one topic's recent messages, oldest first, in a ring that
// grows and shrinks with what is held. Ids in it are consecutive, so a
// message is found from its id alone. Its topic's lock guards it.
//
// The log serves two readers: resuming subscribers, which may read the
// history window (see topicState), and live subscribers, which read from
// their own cursor. A message leaves the log once it is outside the window
// and every subscriber's cursor has passed it.
type topicLog struct {
	buf  []*Message
	head int // index in buf of the oldest message
	n    int
}

func (l *topicLog) len() int { return l.n }

// at returns the i-th oldest message.
func (l *topicLog) at(i int) *Message { return l.buf[(l.head+i)%len(l.buf)] }

// firstID is the id of the oldest message; the log must not be empty.
func (l *topicLog) firstID() uint64 { return l.at(0).ID }

// byID returns the message with the given id, or nil if the log does not
// hold it.
func (l *topicLog) byID(id uint64) *Message {
	if l.n == 0 || id < l.firstID() || id-l.firstID() >= uint64(l.n) {
		return nil
	}
	return l.at(int(id - l.firstID()))
}

// push appends m, whose id must follow the newest message's.
func (l *topicLog) push(m *Message) {
	if l.n == len(l.buf) {
		l.resize(max(2*len(l.buf), 8))
	}
	l.buf[(l.head+l.n)%len(l.buf)] = m
	l.n++
}

// popFront forgets the oldest message.
func (l *topicLog) popFront() {
	l.buf[l.head] = nil // let the message go
	l.head = (l.head + 1) % len(l.buf)
	l.n--
	switch {
	case l.n == 0:
		l.buf, l.head = nil, 0 // an idle topic holds no buffer
	case len(l.buf) > 64 && l.n < len(l.buf)/4:
		l.resize(len(l.buf) / 2) // give back what a burst grew
	}
}

func (l *topicLog) resize(size int) {
	buf := make([]*Message, size)
	for i := range l.n {
		buf[i] = l.at(i)
	}
	l.buf, l.head = buf, 0
}
