//go:build e2e

package realstack

import (
	"encoding/base64"
	"testing"
	"time"
	"unicode/utf8"
)

// TestDeadLetters produces records that are not tasks, each with kcat
// exactly as given, all to one partition, then a valid task behind them:
// each gets one dead letter on ftp-tasks-dlq that keeps its bytes, key and
// headers, and the task still runs.
func TestDeadLetters(t *testing.T) {
	s := NewStack(t, StackOptions{})
	dir := s.FTPDir()
	RemoveOnSuccess(t, env.VSFTPD.Path(dir))
	content := []byte("after the junk\n")
	PutFile(t, env.VSFTPD.Path(dir+"/after.txt"), content)

	junk := RandomBytes(1<<20, 6000) // 1 MiB, not UTF-8
	cases := []struct {
		name     string
		value    []byte
		wantType string
		wantCode string
	}{
		{"empty", nil, "PARSE_ERROR", "EMPTY_MESSAGE"},
		{"not-json", []byte("not json"), "PARSE_ERROR", "INVALID_JSON"},
		{"bad-utf8", []byte("{\"task_id\":\"x\",\"src_id\":\"\xff\xfe\",\"src_path\":\"/a\",\"dst_id\":\"local\",\"dst_path\":\"a\"}"), "PARSE_ERROR", "INVALID_UTF8"},
		{"array", []byte("[]"), "PARSE_ERROR", "NOT_AN_OBJECT"},
		{"number", []byte("42"), "PARSE_ERROR", "NOT_AN_OBJECT"},
		{"empty-object", []byte("{}"), "INVALID_TASK", "MISSING_FIELD"},
		{"wrong-type", []byte(`{"task_id":"w","src_id":1,"src_path":"/a","dst_id":"local","dst_path":"a"}`), "INVALID_TASK", "WRONG_TYPE"},
		{"junk-1mib", junk, "PARSE_ERROR", "INVALID_UTF8"},
	}
	const partition = 0
	var keys []string
	for _, c := range cases {
		key := s.ID("dlq-" + c.name)
		keys = append(keys, key)
		ProduceRaw(t, TasksTopic, partition, Record{Key: key, Value: c.value, Headers: map[string]string{"origin": c.name}})
	}
	after := Task{TaskID: s.ID("dlq-after"), SrcID: "vsftpd", SrcPath: dir + "/after.txt", DstID: "local", DstPath: "after.txt"}
	ProduceRaw(t, TasksTopic, partition, Record{Key: after.TaskID, Value: after.JSON()})

	dlq := s.AwaitDLQ(t, keys, 60*time.Second)
	for i, c := range cases {
		key := keys[i]
		t.Run(c.name, func(t *testing.T) {
			m := dlq[key]
			if len(m.Value) < 2000 {
				t.Logf("%s", m.Value)
			} else {
				t.Logf("%.300s… (%d bytes)", m.Value, len(m.Value))
			}
			if n := len(collector.Messages(key, DLQTopic, s.Since)); n != 1 {
				t.Errorf("%d dead letters, want 1", n)
			}
			if m.Str("error_type") != c.wantType || m.Str("error_code") != c.wantCode || m.Str("error_message") == "" {
				t.Errorf("want %s/%s with a message: %s", c.wantType, c.wantCode, m.Value)
			}
			if m.Str("original_topic") != TasksTopic || m.Str("original_key") != key || m.Key != key {
				t.Errorf("origin: topic %q, key %q, record key %q", m.Str("original_topic"), m.Str("original_key"), m.Key)
			}
			if p, ok := m.Num("original_partition"); !ok || p != partition {
				t.Errorf("original_partition = %v, want %d", m.Fields["original_partition"], partition)
			}
			if _, ok := m.Num("original_offset"); !ok {
				t.Errorf("original_offset missing")
			}
			if sz, ok := m.Num("original_value_size"); !ok || int(sz) != len(c.value) {
				t.Errorf("original_value_size = %v, want %d", m.Fields["original_value_size"], len(c.value))
			}
			if m.Fields["original_value_truncated"] == true {
				t.Errorf("original value truncated")
			}
			var got []byte
			enc := m.Str("original_value_encoding")
			switch enc {
			case "base64":
				var err error
				if got, err = base64.StdEncoding.DecodeString(m.Str("original_value")); err != nil {
					t.Fatalf("original_value is not base64: %v", err)
				}
			case "utf-8":
				got = []byte(m.Str("original_value"))
			default:
				t.Fatalf("original_value_encoding = %q", enc)
			}
			if wantEnc := map[bool]string{true: "utf-8", false: "base64"}[utf8.Valid(c.value)]; enc != wantEnc {
				t.Errorf("original_value_encoding = %s, want %s", enc, wantEnc)
			}
			if string(got) != string(c.value) {
				t.Errorf("original bytes changed: %d bytes back (sha256 %.12s), %d produced (sha256 %.12s)", len(got), Sum(got), len(c.value), Sum(c.value))
			}
			if m.Headers["origin"] != c.name {
				t.Errorf("headers not kept: %v", m.Headers)
			}
			if !timestampRE.MatchString(m.Str("timestamp")) {
				t.Errorf("timestamp %q", m.Str("timestamp"))
			}
		})
	}
	m := s.Outcome(t, after.TaskID, 60*time.Second)
	s.CheckSuccess(t, m, after, int64(len(content)))
	CheckFile(t, s.Base+"/after.txt", Sum(content), int64(len(content)))
	// The bad records are not tasks: none has an outcome.
	for _, k := range keys {
		for _, topic := range []string{ResultsTopic, FailuresTopic} {
			if ms := collector.Messages(k, topic, s.Since); len(ms) > 0 {
				t.Errorf("%s has an outcome on %s: %s", k, topic, ms[0].Value)
			}
		}
	}
}
