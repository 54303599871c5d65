package main

// File sets: the sources live in vsftpd's home (downloads) and, hard-linked,
// under the agents' local endpoint (uploads), so every system moves the very
// same files.

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack"
)

// workload is a set of equal files.
type workload struct {
	name  string // short id, also the directory name
	label string // for tables: "10,000 × 20 B"
	count int
	size  int64
}

var fullWorkloads = []workload{
	{"w20B", "", 10_000, 20},
	{"w100K", "", 2_000, 100 << 10},
	{"w4M", "", 200, 4 << 20},
	{"w1G", "", 4, 1 << 30},
}

func (w workload) title() string {
	return fmt.Sprintf("%s × %s", thousands(w.count), sizeName(w.size))
}

func sizeName(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func fileName(i int) string { return fmt.Sprintf("f%05d.bin", i) }

// remoteSrc is the FTP path of file i of w.
func remoteSrc(w workload, i int) string { return "/bench/" + w.name + "/" + fileName(i) }

// localSrc is the path below the local base of file i of w.
func localSrc(w workload, i int) string { return "src/" + w.name + "/" + fileName(i) }

// ensureFiles makes w's files unless they are there with the right size.
// Files of 1 GiB or more are hard links to one file.
func (b *bench) ensureFiles(w workload) error {
	home := b.env.VSFTPD.Home
	dir := b.env.VSFTPD.Path("/bench/" + w.name)
	ldir := filepath.Join(b.localBase, "src", w.name)
	if st, err := os.Stat(filepath.Join(ldir, fileName(w.count-1))); err == nil && st.Size() == w.size {
		return nil
	}
	b.logf("creating %s in %s", w.title(), dir)
	if err := stack.MkdirOwned(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(ldir, 0o755); err != nil {
		return err
	}
	uid, gid, _ := stack.Owner(home) // -1, -1 leave the owner as it is
	rng := rand.New(rand.NewPCG(uint64(w.size), uint64(w.count)))
	buf := make([]byte, min(w.size, 1<<20))
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	var first string
	for i := 0; i < w.count; i++ {
		p := filepath.Join(dir, fileName(i))
		if w.size >= 1<<30 && first != "" {
			_ = os.Remove(p)
			if err := os.Link(first, p); err != nil {
				return err
			}
		} else {
			f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			for off := int64(0); off < w.size; off += int64(len(buf)) {
				binary.LittleEndian.PutUint64(buf, uint64(i)<<32|uint64(off>>20))
				chunk := buf[:min(int64(len(buf)), w.size-off)]
				if _, err := f.Write(chunk); err != nil {
					f.Close()
					return err
				}
			}
			if err := f.Close(); err != nil {
				return err
			}
			_ = os.Chown(p, uid, gid)
			first = p
		}
		lp := filepath.Join(ldir, fileName(i))
		_ = os.Remove(lp)
		if err := linkOrCopy(p, lp); err != nil {
			return err
		}
	}
	return nil
}

// linkOrCopy hard-links src at dst, or copies it across file systems.
func linkOrCopy(src, dst string) error {
	if os.Link(src, dst) == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// removeFiles deletes w's files.
func (b *bench) removeFiles(w workload) {
	_ = os.RemoveAll(b.env.VSFTPD.Path("/bench/" + w.name))
	_ = os.RemoveAll(filepath.Join(b.localBase, "src", w.name))
}
