package kafka

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Message is one record read back: an outcome, a dead letter.
type Message struct {
	Topic     string
	Partition int32
	Offset    int64
	Time      time.Time // the record's timestamp: when the dispatcher produced it
	// Seen is when the reader got the record.
	Seen    time.Time
	Key     string
	Value   []byte
	Headers map[string]string
	// Fields is Value decoded as a JSON object (nil if it is not one).
	Fields map[string]any
	// Raw is the line kcat printed for it ("" from franz-go).
	Raw string
}

// FromRecord is what franz-go fetched, seen at the given time.
func FromRecord(r *kgo.Record, seen time.Time) Message {
	m := Message{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Time: r.Timestamp, Seen: seen,
		Key: string(r.Key), Value: r.Value, Headers: map[string]string{}}
	for _, h := range r.Headers {
		m.Headers[h.Key] = string(h.Value)
	}
	m.decode()
	return m
}

func (m *Message) decode() { _ = json.Unmarshal(m.Value, &m.Fields) }

// Str is a string field ("" when absent or not a string).
func (m Message) Str(k string) string {
	s, _ := m.Fields[k].(string)
	return s
}

// Num is a numeric field and whether it is one.
func (m Message) Num(k string) (float64, bool) {
	f, ok := m.Fields[k].(float64)
	return f, ok
}

func (m Message) String() string {
	return fmt.Sprintf("%s[%d]@%d key=%q %s", m.Topic, m.Partition, m.Offset, m.Key, m.Value)
}
