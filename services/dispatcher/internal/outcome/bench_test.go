package outcome

import (
	"encoding/json"
	"testing"
	"time"
)

func BenchmarkEncodeOutcome(b *testing.B) {
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		o := &Outcome{TaskID: "test-001", Status: StatusSuccess, SrcID: "remote-ftp", SrcPath: "/test1.txt",
			DstID: "local", DstPath: "/data/storage/test1.txt", BytesTransferred: 20, DurationMS: 3,
			Timestamp: Timestamp(now), Attempts: 1, Agent: "agent-7f9c", Metadata: json.RawMessage(`{"k":1}`)}
		_ = o.Encode()
	}
}
