// Package task turns Kafka records into transfer tasks. A record either is a
// task (and may still be impossible to perform, which Check decides) or is
// not a task at all (a Rejection, bound for the dead-letter queue). Both
// decisions are made once, here, with a reason a producer can act on.
package task

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Record is a consumed Kafka record, independent of the client library.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	// Epoch numbers the partition's assignment the record was read in.
	Epoch     uint64
	Key       []byte
	Value     []byte
	Headers   []Header
	Timestamp time.Time
}

// Header is a Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Task is a transfer request as the producer wrote it.
type Task struct {
	// ID is the producer's task_id, or one derived from the record's
	// position so a redelivered record keeps its id.
	ID      string
	SrcID   string
	SrcPath string
	DstID   string
	DstPath string
	// Overwrite is false when the producer asked to keep an existing destination.
	Overwrite bool
	// Metadata is echoed verbatim in the outcome.
	Metadata json.RawMessage
}

// Rejection explains why a record is not a task.
type Rejection struct {
	// Type is PARSE_ERROR (the record is not a JSON object), the original
	// service's only DLQ error_type, or INVALID_TASK (a JSON object without
	// the fields of a task).
	Type string
	// Code says precisely what is wrong: EMPTY_MESSAGE, INVALID_UTF8,
	// INVALID_JSON, NOT_AN_OBJECT, MISSING_FIELD or WRONG_TYPE.
	Code string
	// Message is for humans.
	Message string
}

func (r *Rejection) Error() string { return r.Code + ": " + r.Message }

// The DLQ error types and codes.
const (
	TypeParseError  = "PARSE_ERROR"
	TypeInvalidTask = "INVALID_TASK"

	CodeEmpty        = "EMPTY_MESSAGE"
	CodeInvalidUTF8  = "INVALID_UTF8"
	CodeInvalidJSON  = "INVALID_JSON"
	CodeNotAnObject  = "NOT_AN_OBJECT"
	CodeMissingField = "MISSING_FIELD"
	CodeWrongType    = "WRONG_TYPE"
)

var requiredFields = []string{"src_id", "src_path", "dst_id", "dst_path"}

// DerivedID is the id of a task that has no task_id: stable for the record,
// so every redelivery of it carries the same id.
func DerivedID(topic string, partition int32, offset int64) string {
	return topic + "-" + strconv.FormatInt(int64(partition), 10) + "-" + strconv.FormatInt(offset, 10)
}

// Parse reads a record's value as a task.
func Parse(rec *Record) (*Task, *Rejection) {
	v := rec.Value
	if len(bytes.TrimSpace(v)) == 0 {
		return nil, &Rejection{Type: TypeParseError, Code: CodeEmpty, Message: "message value is empty"}
	}
	if !utf8.Valid(v) {
		return nil, &Rejection{Type: TypeParseError, Code: CodeInvalidUTF8, Message: "message value is not valid UTF-8"}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(v, &fields); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, &Rejection{Type: TypeParseError, Code: CodeNotAnObject,
				Message: fmt.Sprintf("message value is a JSON %s, want an object", typeErr.Value)}
		}
		return nil, &Rejection{Type: TypeParseError, Code: CodeInvalidJSON, Message: "message value is not JSON: " + err.Error()}
	}
	if fields == nil {
		return nil, &Rejection{Type: TypeParseError, Code: CodeNotAnObject, Message: "message value is JSON null, want an object"}
	}

	var missing, wrong []string
	str := func(name string) string {
		raw, ok := fields[name]
		if !ok {
			missing = append(missing, name)
			return ""
		}
		var s string
		if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			wrong = append(wrong, fmt.Sprintf("%s must be a string, got %s", name, kind(raw)))
		}
		return s
	}
	t := &Task{Overwrite: true}
	t.SrcID, t.SrcPath = str("src_id"), str("src_path")
	t.DstID, t.DstPath = str("dst_id"), str("dst_path")
	if raw, ok := fields["task_id"]; ok && !isNull(raw) {
		if raw[0] != '"' || json.Unmarshal(raw, &t.ID) != nil {
			wrong = append(wrong, fmt.Sprintf("task_id must be a string, got %s", kind(raw)))
		}
	}
	if raw, ok := fields["metadata"]; ok && !isNull(raw) {
		if raw[0] != '{' {
			wrong = append(wrong, fmt.Sprintf("metadata must be an object, got %s", kind(raw)))
		} else {
			t.Metadata = compact(raw)
		}
	}
	if raw, ok := fields["overwrite"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &t.Overwrite); err != nil {
			wrong = append(wrong, fmt.Sprintf("overwrite must be a boolean, got %s", kind(raw)))
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		msg := "missing required field(s): " + strings.Join(missing, ", ")
		if len(wrong) > 0 {
			msg += "; " + strings.Join(wrong, "; ")
		}
		return nil, &Rejection{Type: TypeInvalidTask, Code: CodeMissingField, Message: msg}
	}
	if len(wrong) > 0 {
		return nil, &Rejection{Type: TypeInvalidTask, Code: CodeWrongType, Message: strings.Join(wrong, "; ")}
	}
	if t.ID == "" {
		t.ID = DerivedID(rec.Topic, rec.Partition, rec.Offset)
	}
	return t, nil
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

func compact(raw json.RawMessage) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return raw
	}
	return buf.Bytes()
}

// kind names a JSON value's type for error messages.
func kind(raw json.RawMessage) string {
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}
