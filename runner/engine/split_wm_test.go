package engine

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
)

// splitWMHarness is an engine with a splittable stage "sdf" of two
// subtasks whose output "out" feeds a stage "down" (Forward): subtask 0 is
// a real sdkTask, subtask 1 is scripted by the test through its router and
// the split pool, as its run loop and drainSplits would.
type splitWMHarness struct {
	e          *Engine
	sdf, down  *plan.Stage
	pool       *splitPool
	idle       *sdkTask
	busy       *router
	downstream inbox // inbox of down[0]: every control event of sdf's subtasks
	port       portState
	done       chan error
	ended      *error // the idle subtask's result, once next saw it end
}

func newSplitWMHarness(t *testing.T) *splitWMHarness {
	t.Helper()
	coders := testCoders()
	wv := wire.AddWindowedValue(coders, "kv", "gw")
	sdf := &plan.Stage{ID: "sdf", Kind: plan.KindSDK, Name: "Generate", Splittable: "sdf-process", Outputs: []string{"out"}}
	down := &plan.Stage{ID: "down", Kind: plan.KindSDK, Name: "Count", Input: "out"}
	p := &plan.Plan{
		Components: &pipepb.Components{Coders: coders},
		Stages:     []*plan.Stage{sdf, down},
		PColls: map[string]*plan.PColl{"out": {ID: "out", WireCoder: wv, Producer: sdf,
			Consumers: []plan.Consumer{{Stage: down, Port: 0, Partition: plan.Forward}}}},
	}
	e := New(p, Options{Parallelism: 2, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	inboxes := map[*plan.Stage][]inbox{sdf: newInboxes(2), down: {make(inbox, 256), make(inbox, 256)}}
	h := &splitWMHarness{e: e, sdf: sdf, down: down, pool: newSplitPool(2), downstream: inboxes[down][0], done: make(chan error, 1)}
	h.port = e.ports(down)()[0]
	r0, err := e.router(sdf, 0, inboxes)
	if err != nil {
		t.Fatal(err)
	}
	if h.busy, err = e.router(sdf, 1, inboxes); err != nil {
		t.Fatal(err)
	}
	// sdf has no input stage: subtask 0's inputs have all ended at once,
	// and it has no work of its own.
	h.idle = &sdkTask{subtask: subtask{stage: sdf, index: 0, in: inboxes[sdf][0], out: r0, ports: e.ports(sdf)(), e: e}, split: h.pool}
	return h
}

func (h *splitWMHarness) start(ctx context.Context) {
	go func() { h.done <- h.idle.run(ctx) }()
}

// wait returns the idle subtask's result once it has ended.
func (h *splitWMHarness) wait() error {
	if h.ended != nil {
		return *h.ended
	}
	err := <-h.done
	return err
}

// next returns the next control event down[0] gets from sender. The idle
// subtask may have ended after sending it (select picks at random among
// ready cases), so its end fails the test only once nothing is queued.
func (h *splitWMHarness) next(t *testing.T, ctx context.Context, sender string) msg {
	t.Helper()
	done := h.done
	for {
		select {
		case m := <-h.downstream:
			h.port.observe(m)
			if m.sender == sender {
				return m
			}
		case err := <-done:
			h.ended, done = &err, nil
			select {
			case m := <-h.downstream:
				h.port.observe(m)
				if m.sender == sender {
					return m
				}
				continue
			default:
			}
			t.Fatalf("the idle subtask ended early: %v", err)
		case <-ctx.Done():
			t.Fatalf("no message from %s: %v", sender, ctx.Err())
		}
	}
}

// TestIdleSplitSubtaskForwardsBusySiblingsWatermark: subtask 0 of a
// splittable stage has nothing to do and waits for residuals from its busy
// sibling. It forwards the sibling's output watermark, so the consumer's
// watermark (the minimum over both) follows the busy subtask instead of
// staying at the minimum until the stage ends.
func TestIdleSplitSubtaskForwardsBusySiblingsWatermark(t *testing.T) {
	ctx := testCtx(t)
	h := newSplitWMHarness(t)
	h.start(ctx)
	waitFor(t, h.pool.wantsWork, "subtask 0 idle in the split pool")
	select {
	case m := <-h.downstream:
		t.Fatalf("idle subtask sent %+v before its sibling sent a watermark", m)
	default:
	}

	for _, wm := range []int64{1_000, 1_001, 60_000} {
		// What sdkTask.run of subtask 1 does when its output watermark moves.
		if err := h.busy.control(ctx, msgWatermark, wm); err != nil {
			t.Fatal(err)
		}
		h.next(t, ctx, "sdf/1")
		if m := h.next(t, ctx, "sdf/0"); m.kind != msgWatermark || m.wm != wm {
			t.Fatalf("idle subtask sent %+v; want watermark %d", m, wm)
		}
		if got := h.port.watermark(); got != wm {
			t.Fatalf("consumer's input watermark = %d; want %d", got, wm)
		}
	}
	if got := h.e.Progress()[0].Watermark; got != 60_000 {
		t.Errorf("stage progress watermark = %d; want 60000", got)
	}

	// The busy subtask runs out of work and goes idle: the stage is done,
	// and the idle one ends with end of input.
	if _, ok, err := h.pool.takeFor(ctx, 1, nil); ok || err != nil {
		t.Fatalf("sibling's take = %v, %v; want done", ok, err)
	}
	if m := h.next(t, ctx, "sdf/0"); m.kind != msgEOI {
		t.Fatalf("idle subtask sent %+v at the end; want end of input", m)
	}
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
	if err := h.busy.control(ctx, msgEOI, wire.MaxTimestamp); err != nil {
		t.Fatal(err)
	}
	h.next(t, ctx, "sdf/1")
	if !h.port.done() {
		t.Error("consumer's input not done after both subtasks ended")
	}
}

// TestIdleSplitSubtaskNeverSendsLower: the idle subtask never follows its
// bound down, and stays below the maximum timestamp until the stage ends.
func TestIdleSplitSubtaskNeverSendsLower(t *testing.T) {
	ctx := testCtx(t)
	h := newSplitWMHarness(t)
	// Subtask 1 runs work it took from the pool, held at 5000.
	h.pool.subs[1] = poolSub{phase: subSplits, hold: 5_000}
	h.start(ctx)
	if m := h.next(t, ctx, "sdf/0"); m.kind != msgWatermark || m.wm != 5_000 {
		t.Fatalf("idle subtask sent %+v; want watermark 5000", m)
	}
	h.pool.holding(1, 10) // lower: nothing is sent
	h.pool.holding(1, 7_000)
	if m := h.next(t, ctx, "sdf/0"); m.kind != msgWatermark || m.wm != 7_000 {
		t.Fatalf("idle subtask sent %+v; want watermark 7000", m)
	}
	// Subtask 1 has no work left, and is about to go idle.
	h.pool.holding(1, wire.MaxTimestamp)
	if m := h.next(t, ctx, "sdf/0"); m.kind != msgWatermark || m.wm != wire.MaxTimestamp-1 {
		t.Fatalf("idle subtask sent %+v; want watermark %d", m, wire.MaxTimestamp-1)
	}
	if _, ok, err := h.pool.takeFor(ctx, 1, nil); ok || err != nil {
		t.Fatalf("sibling's take = %v, %v; want done", ok, err)
	}
	if m := h.next(t, ctx, "sdf/0"); m.kind != msgEOI {
		t.Fatalf("idle subtask sent %+v; want end of input", m)
	}
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
}

// forwards collects what a waiting subtask forwards.
type forwards chan int64

func (f forwards) forward(b int64) error { f <- b; return nil }

func (f forwards) expect(t *testing.T, want int64) {
	t.Helper()
	select {
	case got := <-f:
		if got != want {
			t.Fatalf("forwarded %d; want %d", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("nothing forwarded; want %d", want)
	}
}

func (f forwards) none(t *testing.T) {
	t.Helper()
	select {
	case got := <-f:
		t.Fatalf("forwarded %d; want nothing", got)
	default:
	}
}

// TestSplitPoolBound checks the bound a waiting subtask forwards: the
// least of what running siblings hold and of queued residuals' holds.
func TestSplitPoolBound(t *testing.T) {
	ctx := testCtx(t)
	p := newSplitPool(3)
	var sent [3]atomic.Int64
	for i := range sent {
		sent[i].Store(wire.MinTimestamp)
	}
	p.watchSent(func(i int) int64 { return sent[i].Load() })
	sent[0].Store(100)
	sent[2].Store(300)

	type took struct {
		c  []byte
		ok bool
	}
	take := func(i int, f forwards) chan took {
		ch := make(chan took, 1)
		go func() {
			c, ok, err := p.takeFor(ctx, i, f.forward)
			if err != nil {
				t.Error(err)
			}
			ch <- took{c, ok}
		}()
		return ch
	}

	// 1 idle, 0 and 2 in their run loops: the least of what they sent,
	// looked at every wmCheck.
	f1 := make(forwards, 16)
	got1 := take(1, f1)
	f1.expect(t, 100)
	sent[0].Store(200)
	f1.expect(t, 200)

	// 0 splits its bundle: a residual root with a hold, which 1 takes.
	p.putFrom(0, [][]byte{[]byte("r")}, []int64{250})
	if r := <-got1; !r.ok || string(r.c) != "r" {
		t.Fatalf("1 took %q, %v", r.c, r.ok)
	}
	f1.none(t)

	// 1 splits its bundle in turn (nobody waits, so the chunk stays
	// queued): a whole element, held at what 1 holds (250). It bounds
	// whoever may take it.
	sent[0].Store(1_000)
	p.putFrom(1, [][]byte{[]byte("e")}, []int64{wire.MinTimestamp})
	if b, _, poll := p.watch(1); b != 250 || !poll {
		t.Errorf("1's bound with a chunk queued = %d, %v; want 250 and polling", b, poll)
	}
	// 2 ends its run loop and takes it at once.
	f2 := make(forwards, 16)
	if r := <-take(2, f2); !r.ok || string(r.c) != "e" {
		t.Fatalf("2 took %q, %v", r.c, r.ok)
	}
	f2.none(t)

	// 1 and 2 both run pool work: each is bounded by what the other
	// holds, not by the output watermark the other sends (which waits on
	// the pool): neither holds the other back.
	p.holding(1, 400)
	p.holding(2, 500)
	if b, _, _ := p.watch(1); b != 500 {
		t.Errorf("1's bound = %d; want 500 (2's work)", b)
	}
	if b, _, _ := p.watch(2); b != 400 {
		t.Errorf("2's bound = %d; want 400 (1's work)", b)
	}

	// 0 ends its run loop and goes idle: 1 and 2 bound it, and tell the
	// pool when their holds move, which wakes 0 (no polling).
	f0 := make(forwards, 16)
	got0 := take(0, f0)
	f0.expect(t, 400)
	if _, _, poll := p.watch(0); poll {
		t.Error("0 polls with no sibling in its run loop")
	}
	p.holding(1, 700)
	f0.expect(t, 500)
	p.holding(2, 800)
	f0.expect(t, 700)
	// 1 finishes: 0 and 1 follow 2.
	f1 = make(forwards, 16)
	got1 = take(1, f1)
	f0.expect(t, 800)
	f1.expect(t, 800)
	// 2 finishes: the stage is done.
	if _, ok, err := p.takeFor(ctx, 2, nil); ok || err != nil {
		t.Fatalf("last take = %v, %v; want done", ok, err)
	}
	for _, ch := range []chan took{got0, got1} {
		if r := <-ch; r.ok {
			t.Errorf("took %q after the stage was done", r.c)
		}
	}
	f0.none(t)
	f1.none(t)
}

// TestSplitPoolNext: the decisions of a subtask waiting in the split pool,
// without goroutines: take queued work (with its hold), end once no
// sibling runs, forward a bound that has risen, and otherwise wait
// (polling while a sibling in its run loop bounds it).
func TestSplitPoolNext(t *testing.T) {
	sent := func(int) int64 { return 50 }
	for _, tc := range []struct {
		name     string
		setup    func(p *splitPool) // subtask 0 has entered; siblings 1 and 2
		last     int64
		forwards bool
		want     poolStep // chunk compared by length, wake by presence
	}{
		{"queued work is taken", func(p *splitPool) { p.putHeld([][]byte{[]byte("ab")}, []int64{70}) }, wire.MinTimestamp, true,
			poolStep{chunk: []byte("ab"), took: true}},
		{"no sibling runs: done", func(p *splitPool) { p.enter(1); p.enter(2) }, wire.MinTimestamp, true,
			poolStep{done: true}},
		{"a sibling in its run loop bounds it: forward", func(p *splitPool) { p.watchSent(sent); p.enter(2) }, wire.MinTimestamp, true,
			poolStep{forward: true, bound: 50}},
		{"bound forwarded already: wait, polling", func(p *splitPool) { p.watchSent(sent); p.enter(2) }, 50, true,
			poolStep{poll: true}},
		{"not forwarding: wait", func(p *splitPool) { p.watchSent(sent) }, wire.MinTimestamp, false,
			poolStep{}},
		{"a sibling running split work bounds it by its hold", func(p *splitPool) {
			p.enter(1)
			p.putHeld([][]byte{[]byte("x")}, []int64{80})
			p.next(1, wire.MinTimestamp, true) // 1 takes it
			p.enter(2)
		}, wire.MinTimestamp, true, poolStep{forward: true, bound: 80}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newSplitPool(3)
			p.enter(0)
			tc.setup(p)
			got := p.next(0, tc.last, tc.forwards)
			if len(got.chunk) != len(tc.want.chunk) || got.took != tc.want.took || got.done != tc.want.done ||
				got.forward != tc.want.forward || got.bound != tc.want.bound || got.poll != tc.want.poll {
				t.Fatalf("next = %+v, want %+v", got, tc.want)
			}
			if !got.took && !got.done && !got.forward && got.wake == nil {
				t.Fatal("waiting without a channel to wake on")
			}
			if got.took && p.subs[0].phase != subSplits {
				t.Fatalf("after taking, subtask 0 is in phase %d", p.subs[0].phase)
			}
		})
	}
}
