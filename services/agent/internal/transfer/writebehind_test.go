package transfer

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteBehindStartsWritebackPerChunkAndKeepsTheBytes(t *testing.T) {
	for _, offset := range []int64{0, 5 << 20} {
		f, err := os.Create(filepath.Join(t.TempDir(), "f"))
		if err != nil {
			t.Fatal(err)
		}
		head := bytes.Repeat([]byte{'r'}, int(offset)) // an earlier delivery's part
		if _, err := f.Write(head); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, 2*writeBehindChunk+3<<20)
		for i := range body {
			body[i] = byte(rand.Uint32())
		}
		w := newWriteBehind(f, offset)
		if _, err := io.CopyBuffer(w, struct{ io.Reader }{bytes.NewReader(body)}, make([]byte, 1<<20)); err != nil {
			t.Fatal(err)
		}
		// Two whole chunks were handed to writeback; the tail is the final
		// fsync's.
		if want := offset + 2*writeBehindChunk; w.started != want {
			t.Fatalf("offset %d: writeback started up to %d, want %d", offset, w.started, want)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, append(head, body...)) {
			t.Fatalf("offset %d: the file differs from what was written", offset)
		}
	}
}
