// Package outcome encodes the messages FTP Pooler publishes: results on the
// result topic, failures on the failure topic, and dead letters. The field
// names and formats are the original service's, which consumers depend on;
// new fields are only ever added.
package outcome

import (
	"encoding/base64"
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/task"
)

// Status values of the status field.
const (
	StatusSuccess = "success"
	StatusFailed  = "failed"
)

// TimestampLayout is Python's datetime.isoformat() for an aware UTC time,
// as the original wrote it: 2025-11-25T19:00:03.045406+00:00.
const TimestampLayout = "2006-01-02T15:04:05.000000-07:00"

// Timestamp formats t as the original did.
func Timestamp(t time.Time) string { return t.UTC().Format(TimestampLayout) }

// Outcome is a result or a failure message.
type Outcome struct {
	TaskID           string `json:"task_id"`
	Status           string `json:"status"`
	SrcID            string `json:"src_id"`
	SrcPath          string `json:"src_path"`
	DstID            string `json:"dst_id"`
	DstPath          string `json:"dst_path"`
	BytesTransferred int64  `json:"bytes_transferred"`
	DurationMS       int64  `json:"duration_ms"`
	Timestamp        string `json:"timestamp"`
	// ErrorCode and ErrorMessage are set on failures only.
	ErrorCode    string `json:"error_code,omitempty"`
	ErrorMessage string `json:"error_message,omitempty"`
	// Additions to the original format.
	Attempts uint32 `json:"attempts"`
	Agent    string `json:"agent,omitempty"`
	// ResumedFrom is the offset a resumed transfer continued from.
	ResumedFrom int64 `json:"resumed_from,omitempty"`
	// AlreadyDone is true when a redelivery found the task's committed
	// result in place and moved nothing.
	AlreadyDone bool            `json:"already_done,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
}

// Encode returns the JSON message.
func (o *Outcome) Encode() []byte {
	b, err := json.Marshal(o)
	if err != nil {
		// Every field is a string, a number or compacted JSON: cannot fail.
		panic("outcome: " + err.Error())
	}
	return b
}

// DeadLetter is a message on the DLQ: a record that is not a task, with
// enough to find, understand and replay it.
type DeadLetter struct {
	OriginalTopic     string  `json:"original_topic"`
	OriginalPartition int32   `json:"original_partition"`
	OriginalOffset    int64   `json:"original_offset"`
	OriginalKey       *string `json:"original_key"`
	// OriginalKeyEncoding is "base64" when the key is not UTF-8.
	OriginalKeyEncoding string `json:"original_key_encoding,omitempty"`
	// OriginalValue holds the record's bytes: as text when they are UTF-8,
	// base64 otherwise, as OriginalValueEncoding says.
	OriginalValue         string `json:"original_value"`
	OriginalValueEncoding string `json:"original_value_encoding"`
	// OriginalValueSize is the value's length in bytes.
	OriginalValueSize int `json:"original_value_size"`
	// OriginalValueTruncated is true when the value was too large for the
	// DLQ topic and only its first bytes are here; the record itself stays
	// at its original offset.
	OriginalValueTruncated bool   `json:"original_value_truncated,omitempty"`
	ErrorType              string `json:"error_type"`
	ErrorCode              string `json:"error_code"`
	ErrorMessage           string `json:"error_message"`
	Timestamp              string `json:"timestamp"`
}

// NewDeadLetter describes a rejected record.
func NewDeadLetter(rec *task.Record, rej *task.Rejection, now time.Time) *DeadLetter {
	d := &DeadLetter{
		OriginalTopic:     rec.Topic,
		OriginalPartition: rec.Partition,
		OriginalOffset:    rec.Offset,
		OriginalValueSize: len(rec.Value),
		ErrorType:         rej.Type,
		ErrorCode:         rej.Code,
		ErrorMessage:      rej.Message,
		Timestamp:         Timestamp(now),
	}
	if rec.Key != nil {
		k, enc := text(rec.Key)
		d.OriginalKey, d.OriginalKeyEncoding = &k, enc
		if enc == "utf-8" {
			d.OriginalKeyEncoding = ""
		}
	}
	d.OriginalValue, d.OriginalValueEncoding = text(rec.Value)
	return d
}

func text(b []byte) (string, string) {
	if utf8.Valid(b) {
		return string(b), "utf-8"
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

// Encode returns the JSON message.
func (d *DeadLetter) Encode() []byte {
	b, err := json.Marshal(d)
	if err != nil {
		panic("outcome: " + err.Error())
	}
	return b
}

// Truncated returns a copy that keeps only the first max bytes of the
// original value (rec.Value), for a DLQ topic that refuses the full message.
// The record itself stays readable at its original offset.
func (d *DeadLetter) Truncated(value []byte, max int) *DeadLetter {
	c := *d
	c.OriginalValueTruncated = true
	if len(value) <= max {
		return &c
	}
	cut := value[:max]
	if c.OriginalValueEncoding == "utf-8" {
		// Back off to a rune boundary so the text stays valid UTF-8.
		for len(cut) > 0 && !utf8.Valid(cut) {
			cut = cut[:len(cut)-1]
		}
	}
	c.OriginalValue, c.OriginalValueEncoding = text(cut)
	return &c
}
