package intake

import (
	"io"
	"log/slog"
	"testing"
)

func TestMembershipKnownOnlyAfterTheFirstReading(t *testing.T) {
	var shares [][2]int
	m := &Membership{last: [2]int{-1, -1}, logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		onChange: func(members, rank int) { shares = append(shares, [2]int{members, rank}) }}
	if m.Known() {
		t.Fatal("known before any reading")
	}
	m.apply(2, 1)
	if !m.Known() || len(shares) != 1 || shares[0] != [2]int{2, 1} {
		t.Fatalf("after a reading: known %v, shares %v", m.Known(), shares)
	}
}

func TestMembershipGivingUpCountsAsKnown(t *testing.T) {
	// A cluster that refuses DescribeGroups must not keep the dispatcher
	// unready for ever: it acts alone.
	m := &Membership{last: [2]int{-1, -1}, logger: slog.New(slog.NewTextHandler(io.Discard, nil)), onChange: func(int, int) {}}
	m.failed(nil)
	if !m.Known() || m.last != [2]int{1, 0} {
		t.Fatalf("after a failed first reading: known %v, last %v", m.Known(), m.last)
	}
}
