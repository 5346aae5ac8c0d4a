package hostload

import (
	"errors"
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want proc
		ok   bool
	}{
		{"plain", "42 (etcd) S 7 42 42 0 -1 4194560 100 0 0 0 150 50 3 2 20 0 10 0", proc{ppid: 7, ticks: 205}, true},
		{"comm with spaces and parens", "9 (a b) c)) R 1 9 9 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0", proc{ppid: 1, ticks: 10}, true},
		{"truncated", "9 (x) R 1 2", proc{}, false},
		{"garbage", "no parens here", proc{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseStat(tc.in)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("parseStat = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestForeignCountsOnlyOthers(t *testing.T) {
	before := Snapshot{10: {1, 100}, 20: {1, 50}, 30: {10, 5}}
	after := Snapshot{10: {1, 300}, 20: {1, 70}, 30: {10, 9}, 40: {1, 15}}
	ours := func(pid int) bool { return pid == 10 }
	// 20 used 20 ticks, 40 started and used 15; 30 is a child of ours.
	if got, want := Foreign(before, after, ours), 350*time.Millisecond; got != want {
		t.Fatalf("Foreign = %v, want %v", got, want)
	}
}

func TestTakeSeesThisProcess(t *testing.T) {
	s, err := Take()
	if errors.Is(err, ErrUnsupported) {
		t.Skip("needs Linux /proc")
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s[os.Getpid()]; !ok {
		t.Fatalf("own pid %d missing from %d processes", os.Getpid(), len(s))
	}
}

func TestUsedIsOneProcessDelta(t *testing.T) {
	before := Snapshot{10: {1, 100}, 20: {1, 50}}
	after := Snapshot{10: {1, 300}, 20: {1, 70}, 40: {1, 15}}
	for _, c := range []struct {
		pid  int
		want time.Duration
	}{{10, 2 * time.Second}, {20, 200 * time.Millisecond}, {40, 0}, {99, 0}} {
		if got := Used(before, after, c.pid); got != c.want {
			t.Errorf("Used(pid %d) = %v, want %v", c.pid, got, c.want)
		}
	}
}
