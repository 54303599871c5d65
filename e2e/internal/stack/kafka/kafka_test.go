package kafka

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"
)

func msg(topic string, offset int64, key string, at time.Time) Message {
	return Message{Topic: topic, Offset: offset, Key: key, Time: at}
}

func TestOutcomesAwait(t *testing.T) {
	o := NewOutcomes()
	now := time.Now()
	o.Add(msg(ResultsTopic, 1, "a", now))
	o.Add(msg(ResultsTopic, 1, "a", now)) // read again after a reader restart
	o.Add(msg(FailuresTopic, 2, "old", now.Add(-time.Hour)))
	if n := len(o.Messages("a", "", time.Time{})); n != 1 {
		t.Errorf("a record added twice is held %d times", n)
	}

	go func() {
		time.Sleep(20 * time.Millisecond)
		o.Add(msg(FailuresTopic, 3, "b", now))
		o.Add(msg(DLQTopic, 4, "c", now))
	}()
	got, missing := o.Await([]string{"a", "b"}, "", now, 5*time.Second)
	if len(missing) > 0 || got["a"].Offset != 1 || got["b"].Offset != 3 {
		t.Errorf("Await = %v, missing %v", got, missing)
	}

	start := time.Now()
	got, missing = o.Await([]string{"a", "old", "c"}, ResultsTopic, now.Add(-time.Minute), 50*time.Millisecond)
	if !slices.Equal(missing, []string{"old", "c"}) || len(got) != 1 || time.Since(start) < 50*time.Millisecond {
		t.Errorf("Await with topic and since = %v, missing %v after %s", got, missing, time.Since(start))
	}
	if with, total := o.Count([]string{"a", "b", "c", "none"}, now); with != 3 || total != 3 {
		t.Errorf("Count = %d, %d", with, total)
	}
}

func TestOutcomesFailEndsAwait(t *testing.T) {
	o := NewOutcomes()
	go func() {
		time.Sleep(20 * time.Millisecond)
		o.Fail("reader died")
	}()
	start := time.Now()
	if _, missing := o.Await([]string{"x"}, "", time.Time{}, time.Minute); len(missing) != 1 || time.Since(start) > 10*time.Second {
		t.Errorf("Await after Fail: missing %v after %s", missing, time.Since(start))
	}
	if _, missing := o.Await([]string{"x"}, "", time.Time{}, time.Minute); len(missing) != 1 {
		t.Error("Await after a failure waits")
	}
	if errs := o.Errors(); !slices.Equal(errs, []string{"reader died"}) {
		t.Errorf("Errors = %v", errs)
	}
}

func TestOutcomesTrack(t *testing.T) {
	o := NewOutcomes()
	o.Add(msg(ResultsTopic, 1, "earlier", time.Now()))
	o.Track([]string{"run-1", "run-2"})
	if o.Wants("other") || !o.Wants("run-1") {
		t.Error("Wants does not follow Track")
	}
	o.Add(msg(ResultsTopic, 2, "other", time.Now()))
	o.Add(msg(ResultsTopic, 3, "run-1", time.Now()))
	if len(o.Messages("earlier", "", time.Time{})) != 0 || len(o.Messages("other", "", time.Time{})) != 0 {
		t.Error("Track kept what it should have dropped")
	}
	if _, missing := o.Await([]string{"run-1", "run-2"}, "", time.Time{}, 10*time.Millisecond); !slices.Equal(missing, []string{"run-2"}) {
		t.Errorf("missing %v", missing)
	}
	o.Track(nil)
	if o.Wants("run-1") {
		t.Error("Track(nil) still wants a key")
	}
}

func TestTaskJSON(t *testing.T) {
	tk := Task{TaskID: "t-1", SrcID: "vsftpd", SrcPath: "/a", DstID: "local", DstPath: "b", Extra: map[string]any{"overwrite": true}}
	var got map[string]any
	if err := json.Unmarshal(tk.JSON(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"task_id": "t-1", "src_id": "vsftpd", "src_path": "/a", "dst_id": "local", "dst_path": "b", "overwrite": true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("JSON = %s", tk.JSON())
	}
	var bare map[string]any
	if err := json.Unmarshal(Task{SrcID: "x"}.JSON(), &bare); err != nil || bare["task_id"] != nil {
		t.Errorf("a task without an id has one: %v", bare)
	}
	if recs := Records(tk); len(recs) != 1 || recs[0].Key != "t-1" {
		t.Errorf("Records = %v", recs)
	}
}

func TestKcatProducerArgs(t *testing.T) {
	k := Kcat{Brokers: "b:9092"}
	got := k.producerArgs(TasksTopic, 2, map[string]string{"z": "1", "a": "2"})
	want := []string{"-P", "-b", "b:9092", "-t", TasksTopic, "-X", "message.max.bytes=16777216", "-X", "acks=all", "-q", "-p", "2", "-H", "a=2", "-H", "z=1"}
	if !slices.Equal(got, want) {
		t.Errorf("producerArgs = %q", got)
	}
	if err := k.ProduceLines(TasksTopic, []Record{{Key: "k", Value: []byte("two\nlines")}}); err == nil {
		t.Error("ProduceLines took a value of two lines")
	}
}
