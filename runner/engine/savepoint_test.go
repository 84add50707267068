package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/weir-runner/weir/checkpoint"
)

// TestCheckpointNow: the checkpoint a savepoint asks for starts at once
// (or is the one under way), the caller hears when it completes, and it
// stays while the caller holds it: a later checkpoint's retention does not
// delete it until it is released. A caller whose run ends first is told.
func TestCheckpointNow(t *testing.T) {
	r := newHandOverRig(t)
	type result struct {
		meta    *checkpoint.Metadata
		release func()
		err     error
	}
	ask := func() <-chan result {
		ch := make(chan result, 1)
		go func() {
			m, rel, err := r.c.checkpointNow(context.Background())
			ch <- result{m, rel, err}
		}()
		return ch
	}
	waitStarted := func(chk int64) {
		t.Helper()
		for {
			r.c.mu.Lock()
			n := len(r.c.waiters[chk])
			r.c.mu.Unlock()
			if n > 0 {
				return
			}
		}
	}
	got := ask()
	waitStarted(1)
	r.cur = 1
	r.do("snap a")
	r.do("snap b")
	res := <-got
	if res.err != nil || res.meta.CheckpointID != 1 {
		t.Fatalf("checkpointNow: %v, %v; want checkpoint 1", res.meta, res.err)
	}
	// Two more checkpoints with two retained: 1 would go, but is held.
	for _, chk := range []int64{2, 3} {
		r.do("start")
		if r.cur != chk {
			t.Fatalf("started %d, want %d", r.cur, chk)
		}
		r.do("snap a")
		r.do("snap b")
	}
	if _, err := checkpoint.ReadMetadata(context.Background(), r.st, rigJob, 1); err != nil {
		t.Fatalf("checkpoint 1, held by a savepoint, was deleted: %v", err)
	}
	res.release()
	r.do("start")
	r.do("snap a")
	r.do("snap b")
	if _, err := checkpoint.ReadMetadata(context.Background(), r.st, rigJob, 1); err == nil {
		t.Fatal("checkpoint 1 was kept after its release")
	}

	// The run ends before the checkpoint completes: the caller is told.
	ctx, cancel := context.WithCancelCause(context.Background())
	r.c.ctx = ctx
	got = ask()
	waitStarted(5)
	cancel(errors.New("run failed"))
	r.c.endWaits()
	if res := <-got; res.err == nil || !strings.Contains(res.err.Error(), "run ended before checkpoint 5") {
		t.Fatalf("checkpointNow after the run ended: %v", res.err)
	}
}

func TestSavepointRename(t *testing.T) {
	src := &SavepointSource{Rename: map[string]string{"Count": "Counter", "Count/Inner": "Kept", "Old": ""}}
	for _, tc := range []struct {
		in, out string
		ok      bool
	}{
		{"Count", "Counter", true},
		{"Count/x.fn", "Counter/x.fn", true},
		{"Count/Inner/y", "Kept/y", true}, // the longest key wins
		{"Counter2", "Counter2", true},    // not under "Count"
		{"Old/z", "", false},              // dropped
		{"Other", "Other", true},
	} {
		if got, ok := src.renamed(tc.in); got != tc.out || ok != tc.ok {
			t.Errorf("renamed(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.out, tc.ok)
		}
	}
}
