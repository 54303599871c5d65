package outcome

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/task"
)

func TestTimestampMatchesOriginal(t *testing.T) {
	t.Parallel()
	ts := time.Date(2025, 11, 25, 19, 0, 3, 45406000, time.FixedZone("KST", 9*3600)).Add(9 * time.Hour)
	if got := Timestamp(ts); got != "2025-11-25T19:00:03.045406+00:00" {
		t.Fatalf("Timestamp = %s", got)
	}
}

func TestOutcomeFieldOrderAndNames(t *testing.T) {
	t.Parallel()
	o := &Outcome{TaskID: "test-001", Status: StatusSuccess, SrcID: "remote-ftp", SrcPath: "/test1.txt",
		DstID: "local", DstPath: "/data/storage/test1.txt", BytesTransferred: 20, DurationMS: 3,
		Timestamp: "2025-11-25T19:00:03.045406+00:00", Attempts: 1, Agent: "a1"}
	want := `{"task_id":"test-001","status":"success","src_id":"remote-ftp","src_path":"/test1.txt","dst_id":"local","dst_path":"/data/storage/test1.txt","bytes_transferred":20,"duration_ms":3,"timestamp":"2025-11-25T19:00:03.045406+00:00","attempts":1,"agent":"a1"}`
	if got := string(o.Encode()); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	o.Status, o.ErrorCode, o.ErrorMessage = StatusFailed, "FILE_NOT_FOUND", "550 no such file"
	o.Metadata = json.RawMessage(`{"k":1}`)
	got := string(o.Encode())
	if !strings.Contains(got, `"error_code":"FILE_NOT_FOUND","error_message":"550 no such file"`) || !strings.HasSuffix(got, `"metadata":{"k":1}}`) {
		t.Fatalf("failure = %s", got)
	}
}

func TestDeadLetterKeepsBytes(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	rej := &task.Rejection{Type: task.TypeParseError, Code: task.CodeInvalidUTF8, Message: "m"}
	raw := []byte{'{', 0xff, 0xfe, '}'}
	d := NewDeadLetter(&task.Record{Topic: "ftp-tasks", Partition: 1, Offset: 7, Key: []byte{0xff}, Value: raw}, rej, now)
	var m map[string]any
	if err := json.Unmarshal(d.Encode(), &m); err != nil {
		t.Fatal(err)
	}
	if m["original_value_encoding"] != "base64" || m["original_key_encoding"] != "base64" {
		t.Fatalf("encodings: %v", m)
	}
	back, _ := base64.StdEncoding.DecodeString(m["original_value"].(string))
	if string(back) != string(raw) {
		t.Fatalf("bytes changed: %x", back)
	}
	if m["original_topic"] != "ftp-tasks" || m["original_partition"].(float64) != 1 || m["original_offset"].(float64) != 7 ||
		m["error_type"] != "PARSE_ERROR" || m["error_code"] != "INVALID_UTF8" || m["original_value_size"].(float64) != 4 {
		t.Fatalf("fields: %v", m)
	}

	text := NewDeadLetter(&task.Record{Topic: "t", Value: []byte("not json")}, rej, now)
	if text.OriginalValue != "not json" || text.OriginalValueEncoding != "utf-8" || text.OriginalKey != nil {
		t.Fatalf("text dead letter: %+v", text)
	}
	if !strings.Contains(string(text.Encode()), `"original_key":null`) {
		t.Fatalf("a missing key must be null: %s", text.Encode())
	}
}

func TestDeadLetterTruncated(t *testing.T) {
	t.Parallel()
	value := []byte(strings.Repeat("é", 10)) // 20 bytes, 2 per rune
	d := NewDeadLetter(&task.Record{Value: value}, &task.Rejection{}, time.Now())
	tr := d.Truncated(value, 5)
	if !tr.OriginalValueTruncated || tr.OriginalValue != "éé" || tr.OriginalValueEncoding != "utf-8" || tr.OriginalValueSize != 20 {
		t.Fatalf("truncated: %+v", tr)
	}
	if d.OriginalValueTruncated {
		t.Fatal("Truncated must not modify the original")
	}
}
