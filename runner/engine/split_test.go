package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSplitPoolSingleSubtaskEndsAtOnce(t *testing.T) {
	p := newSplitPool(1)
	c, ok, err := p.take(testCtx(t))
	if err != nil || ok || c != nil {
		t.Fatalf("take on a pool of one idle subtask = %q, %v, %v; want done", c, ok, err)
	}
}

func TestSplitPoolHandsOverWork(t *testing.T) {
	ctx := testCtx(t)
	p := newSplitPool(2)
	if p.wantsWork() {
		t.Fatal("wantsWork with nobody idle")
	}
	type res struct {
		c   []byte
		ok  bool
		err error
	}
	got := make(chan res, 1)
	go func() {
		c, ok, err := p.take(ctx) // subtask A goes idle
		got <- res{c, ok, err}
	}()
	waitFor(t, p.wantsWork, "subtask A idle")
	p.put([]byte("residual")) // subtask B, running, splits
	r := <-got
	if r.err != nil || !r.ok || string(r.c) != "residual" {
		t.Fatalf("A took %q, %v, %v; want the residual", r.c, r.ok, r.err)
	}
	if p.wantsWork() {
		t.Fatal("wantsWork while both subtasks run")
	}
	// B goes idle: A still runs, so B waits.
	go func() {
		c, ok, err := p.take(ctx)
		got <- res{c, ok, err}
	}()
	waitFor(t, p.wantsWork, "subtask B idle")
	select {
	case r := <-got:
		t.Fatalf("B's take returned %+v while A still runs", r)
	case <-time.After(20 * time.Millisecond):
	}
	// A finishes its work and goes idle: both are done.
	if c, ok, err := p.take(ctx); err != nil || ok {
		t.Fatalf("A's last take = %q, %v, %v; want done", c, ok, err)
	}
	if r := <-got; r.err != nil || r.ok {
		t.Fatalf("B's take = %+v; want done", r)
	}
	// Once done, the pool stays done.
	if _, ok, err := p.take(ctx); ok || err != nil {
		t.Fatalf("take after done = %v, %v", ok, err)
	}
}

func TestSplitPoolRunningSubtaskTakesItsOwnPut(t *testing.T) {
	// A subtask that puts work and then goes idle gets the work back even if
	// every sibling is already idle.
	ctx, cancel := context.WithCancel(testCtx(t))
	p := newSplitPool(3)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // no goroutine outlives the test
	results := make(chan bool, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, ok, err := p.take(ctx)
				if err != nil {
					if ctx.Err() == nil || !errors.Is(err, context.Canceled) {
						t.Error(err)
					}
					return
				}
				if !ok {
					results <- false
					return
				}
				results <- true
			}
		}()
	}
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.idle == 2 }, "two siblings idle")
	p.mu.Lock()
	p.queue = append(p.queue, []byte("a")) // as put, without waking anyone
	p.mu.Unlock()
	c, ok, err := p.take(ctx)
	if err != nil || !ok || string(c) != "a" {
		t.Fatalf("take with queued work = %q, %v, %v", c, ok, err)
	}
	if _, ok, err := p.take(ctx); ok || err != nil {
		t.Fatalf("final take = %v, %v; want done", ok, err)
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r {
			t.Error("a sibling took work that was already taken")
		}
	}
}

func TestSplitPoolTakeHonoursContext(t *testing.T) {
	p := newSplitPool(2)
	cause := errors.New("job cancelled")
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		waitFor(t, p.wantsWork, "idle subtask")
		cancel(cause)
	}()
	if _, ok, err := p.take(ctx); ok || !errors.Is(err, cause) {
		t.Fatalf("take after cancel = %v, %v; want %v", ok, err, cause)
	}
}

// TestSplitPoolConcurrent runs n subtasks that process a tree of work:
// an item of depth d > 0 puts two items of depth d-1 into the pool while
// its subtask runs. Every item must be processed exactly once, and a take
// may report the stage done only when no subtask is busy and nothing is
// queued.
func TestSplitPoolConcurrent(t *testing.T) {
	for _, tc := range []struct{ n, roots, depth int }{
		{1, 1, 6}, {2, 2, 7}, {4, 1, 8}, {4, 4, 6}, {8, 3, 6}, {5, 0, 0},
	} {
		for rep := range 5 {
			ctx := testCtx(t)
			p := newSplitPool(tc.n)
			var processed, busy atomic.Int64
			var doneCount atomic.Int64
			seen := sync.Map{}
			var nextID atomic.Uint64
			item := func(depth int) []byte {
				b := binary.BigEndian.AppendUint64(nil, nextID.Add(1))
				return append(b, byte(depth))
			}
			process := func(w []byte) {
				if _, dup := seen.LoadOrStore(string(w[:8]), true); dup {
					t.Errorf("item %x processed twice", w[:8])
				}
				processed.Add(1)
				if d := int(w[8]); d > 0 {
					p.put(item(d-1), item(d-1))
				}
			}
			var wg sync.WaitGroup
			for i := range tc.n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					busy.Add(1)
					// Subtask i starts with its share of the roots.
					for r := i; r < tc.roots; r += tc.n {
						process(item(tc.depth))
					}
					for {
						busy.Add(-1)
						w, ok, err := p.take(ctx)
						if err != nil {
							t.Errorf("subtask %d: %v", i, err)
							return
						}
						if !ok {
							doneCount.Add(1)
							if b := busy.Load(); b != 0 {
								t.Errorf("subtask %d told done while %d subtasks are busy", i, b)
							}
							p.mu.Lock()
							if q := len(p.queue); q != 0 {
								t.Errorf("subtask %d told done with %d chunks queued", i, q)
							}
							p.mu.Unlock()
							return
						}
						busy.Add(1)
						process(w)
						if rep%2 == 1 {
							time.Sleep(time.Microsecond) // vary the interleaving
						}
					}
				}()
			}
			finished := make(chan struct{})
			go func() { wg.Wait(); close(finished) }()
			select {
			case <-finished:
			case <-ctx.Done():
				t.Errorf("n=%d roots=%d depth=%d: deadlock (processed %d)", tc.n, tc.roots, tc.depth, processed.Load())
				<-finished // every take returns once ctx is done
				return
			}
			want := int64(tc.roots) * (1<<(tc.depth+1) - 1)
			if got := processed.Load(); got != want {
				t.Errorf("n=%d roots=%d depth=%d: processed %d items, want %d", tc.n, tc.roots, tc.depth, got, want)
			}
			if got := doneCount.Load(); got != int64(tc.n) {
				t.Errorf("n=%d: %d subtasks were told done, want all %d", tc.n, got, tc.n)
			}
		}
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("timed out waiting for %s", what)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSplitNow: what one look at a running splittable bundle decides.
func TestSplitNow(t *testing.T) {
	lim := Limits{BundleTime: time.Second, BundleOutputBytes: 100}
	for _, tc := range []struct {
		name            string
		draining, share bool
		ran             time.Duration
		out             int64
		fraction        float64
		split, readOut  bool
	}{
		{name: "young small bundle", ran: 10 * time.Millisecond, out: 10, readOut: true},
		{name: "ran its time", ran: time.Second, fraction: 0, split: true},
		{name: "output full", ran: 10 * time.Millisecond, out: 100, split: true, readOut: true},
		{name: "siblings want work", share: true, fraction: 0.5, split: true},
		{name: "draining wins over sharing", draining: true, share: true, fraction: 0, split: true},
		{name: "draining", draining: true, fraction: 0, split: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read := false
			f, ok := splitNow(lim, tc.draining, tc.share, tc.ran, func() int64 { read = true; return tc.out })
			if f != tc.fraction || ok != tc.split {
				t.Errorf("splitNow = %v, %v; want %v, %v", f, ok, tc.fraction, tc.split)
			}
			if read != tc.readOut {
				t.Errorf("output size read: %v, want %v (it costs a call to the worker)", read, tc.readOut)
			}
		})
	}
}
