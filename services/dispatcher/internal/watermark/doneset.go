package watermark

import (
	"strconv"
	"strings"
)

// The done-set is written into the metadata of the committed offset n as
// "ftp-pooler/1:" followed by comma-separated ranges of offsets relative to
// n, "a" or "a-b": "ftp-pooler/1:2,5-9" after n=100 says 102 and 105..109
// have their outcomes published. Relative offsets and ranges keep it short:
// Kafka caps the metadata (offset.metadata.max.bytes, 4096 by default).
const donePrefix = "ftp-pooler/1:"

// encodeDone writes the done offsets (two ascending lists, all above n) as
// metadata of at most limit bytes. It returns how many offsets did not fit:
// the highest ones are left out first.
func encodeDone(n int64, done, inherited []int64, limit int) (string, int) {
	offs := mergeSorted(done, inherited)
	if len(offs) == 0 {
		return "", 0
	}
	var b strings.Builder
	b.WriteString(donePrefix)
	written := 0
	for i := 0; i < len(offs); {
		j := i
		for j+1 < len(offs) && offs[j+1] == offs[j]+1 {
			j++
		}
		r := strconv.FormatInt(offs[i]-n, 10)
		if j > i {
			r += "-" + strconv.FormatInt(offs[j]-n, 10)
		}
		sep := 0
		if written > 0 {
			sep = 1
		}
		if b.Len()+sep+len(r) > limit {
			break
		}
		if sep == 1 {
			b.WriteByte(',')
		}
		b.WriteString(r)
		written += j - i + 1
		i = j + 1
	}
	if written == 0 {
		return "", len(offs)
	}
	return b.String(), len(offs) - written
}

// decodeDone reads metadata written by encodeDone for committed offset n.
// Anything else (empty, another tool's, damaged) yields nil: without a
// done-set the records are simply processed again.
func decodeDone(n int64, md string) []int64 {
	rest, ok := strings.CutPrefix(md, donePrefix)
	if !ok || rest == "" {
		return nil
	}
	var out []int64
	last := int64(-1)
	for _, r := range strings.Split(rest, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		a, err := strconv.ParseInt(lo, 10, 64)
		if err != nil || a <= last {
			return nil
		}
		b := a
		if isRange {
			if b, err = strconv.ParseInt(hi, 10, 64); err != nil || b < a || b-a > 1<<20 {
				return nil
			}
		}
		for o := a; o <= b; o++ {
			out = append(out, n+o)
		}
		last = b
	}
	return out
}

func mergeSorted(a, b []int64) []int64 {
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 {
		return b
	}
	out := make([]int64, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			out = append(out, a[i])
			i++
		case a[i] > b[j]:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i, j = i+1, j+1
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}
