package task

import "testing"

func BenchmarkParseAndCheck(b *testing.B) {
	conns := testConnections(b)
	rec := &Record{Topic: "ftp-tasks", Partition: 1, Offset: 42, Value: []byte(seed)}
	b.ReportAllocs()
	for b.Loop() {
		t, rej := Parse(rec)
		if rej != nil {
			b.Fatal(rej)
		}
		if err := Check(t, conns, 10); err != nil {
			b.Fatal(err)
		}
	}
}
