package rate

import (
	"testing"
	"time"
)

func TestSlidingMinute(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	w := New(func() time.Time { return now })
	for range 120 {
		w.Add("success")
	}
	w.Add("FILE_NOT_FOUND")
	got := w.PerSecond()
	if got["success"] != 2 || got["FILE_NOT_FOUND"] != 1.0/60 {
		t.Fatalf("rates = %v", got)
	}
	now = now.Add(30 * time.Second)
	for range 60 {
		w.Add("success")
	}
	if got := w.PerSecond()["success"]; got != 3 {
		t.Fatalf("half a minute later: %v, want 3 (180 events in the window)", got)
	}
	now = now.Add(31 * time.Second) // the first second's 120 fall out
	if got := w.PerSecond()["success"]; got != 1 {
		t.Fatalf("a minute after the first events: %v, want 1", got)
	}
	now = now.Add(time.Hour)
	if got := w.PerSecond(); len(got) != 0 {
		t.Fatalf("an hour later: %v", got)
	}
}
