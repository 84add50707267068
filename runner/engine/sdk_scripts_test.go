package engine

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/coder"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/exec"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/typex"
	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/cockroachdb/datadriven"
	"github.com/jonboulle/clockwork"
	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/runner/engine/coord"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// sdkRig is one SDK subtask stepped by a script (sdkTask.step, no
// goroutine), its bundles run by a fake harness whose DoFn passes every
// element through and, in a stateful stage, sets a timer per element.
type sdkRig struct {
	t       *testing.T
	task    *sdkTask
	out     inbox
	outWV   wire.WVCoder
	clock   *clockwork.FakeClock
	bundles []string // what each bundle held, since last printed
	// timer is when the DoFn sets its key's timer: "" for none, "end" for
	// the end of the element's window, "+D" for D ms after the element.
	timer string
	// With checkpointing: the "sdk" command (restore builds the subtask
	// again from it) and the checkpoint storage.
	spec   *datadriven.TestData
	st     storage.Storage
	closed bool
	// finished: the subtask has finished (its shell's loop would end).
	finished bool
	// awaiting is the checkpoint a trigger started while the subtask
	// still reads what is queued (0: none).
	awaiting int64
}

// runSDKScript runs a script of testdata/sdk. Commands:
//
//	sdk [windows=fixed|global] [senders=N] [timer=end|+D] [timers-per-firing=N] [bundle-bytes=N] [checkpointing] [splittable]
//	                   a stage whose DoFn emits each element as it is; with
//	                   timer, it is stateful and sets an event-time timer
//	                   for the element's key and window (again for a key
//	                   that has one: the later setting wins), holding the
//	                   output watermark at the element's timestamp; the
//	                   timer emits "<key> fired@<T>"; splittable, it is a
//	                   polling source: for element "<key> <n>" it emits it and
//	                   defers "<key> <n+1>" for 1 s of processing time, and
//	                   while the job drains (truncated) it emits
//	                   "<key> <n>-truncated" and defers nothing
//	data from=I        elements, one per line: key value timestamp window
//	watermark from=I t=MS
//	end from=I         the sender's end of input
//
// Once every input has ended and nothing is left to run, the subtask
// finishes (every timer left fires, its output ends), as its shell would.
//
//	timers             lists the timers set (key, window, firing time)
//	advance by=MS      processing time moves, then a wake-up
//	drain              the job drains
//	stop               a stop with savepoint is asked for: sources stop
//	                   once they have snapshotted the next checkpoint
//	wake               a wake-up: pending input runs (one bundle when
//	                   checkpointing), due residuals and timers
//
// With checkpointing, bundles run one per step (stepwise), and:
//
//	barrier from=I     the next checkpoint starts and its barrier comes from
//	                   sender I; the subtask's snapshot is uploaded and the
//	                   checkpoint committed
//	trigger            the next checkpoint starts and the coordinator asks the
//	                   subtask for it at once (its inputs have ended: the
//	                   barrier overtakes what is pending, and what is still
//	                   queued, the commands up to the last end)
//	restore            the subtask is built again from the latest completed
//	                   checkpoint (its inputs not ended), as after a crash
//
// Output lines: "bundle <n> elements, <m> timers" per bundle run, then what
// the subtask sent: "out <key> <value> ts=<T> <window>" (sorted within one
// message), "watermark <T>", "barrier <N>", "end"; then "checkpoint <N>:
// ..." once a checkpoint completed, with what its snapshot of the subtask
// holds besides Pebble.
func runSDKScript(t *testing.T, path string) {
	var r *sdkRig
	datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
		ctx := testCtx(t)
		var err error
		if m, ok := scriptMsg(t, d); ok {
			err = r.step(ctx, m)
		} else {
			switch d.Cmd {
			case "sdk":
				r = newSDKRig(t, d, nil, nil)
				return ""
			case "wake":
				err = r.event(ctx, sdkEvent{})
			case "advance":
				var by int64
				d.ScanArgs(t, "by", &by)
				r.clock.Advance(time.Duration(by) * time.Millisecond)
				err = r.event(ctx, sdkEvent{})
			case "drain":
				r.task.e.Drain()
				err = r.event(ctx, sdkEvent{drain: true})
			case "stop":
				c := r.task.e.ck
				c.step(func(n *coord.Coordinator[finalization]) []coord.Action[finalization] {
					r.task.e.stop.from.Store(n.Next())
					return nil
				})
				return fmt.Sprintf("sources stop at checkpoint %d\n", r.task.e.stop.from.Load())
			case "timers":
				return r.timers()
			case "barrier":
				var i int
				d.ScanArgs(t, "from", &i)
				chk := r.startCheckpoint()
				if err = r.step(ctx, msg{kind: msgBarrier, sender: fmt.Sprintf("up/%d", i), chk: chk}); err == nil {
					return r.sent() + r.completed(chk)
				}
			case "trigger":
				chk := r.startCheckpoint()
				if err = r.event(ctx, sdkEvent{chk: chk}); err == nil && r.task.overtaking > 0 {
					r.awaiting = chk
					return r.sent() + fmt.Sprintf("overtaking %d: what is queued goes into the snapshot\n", chk)
				} else if err == nil {
					return r.sent() + r.completed(chk)
				}
			case "restore":
				meta, _, err := checkpoint.Latest(ctx, r.st, sdkRigJob)
				if err != nil {
					t.Fatalf("%s: %v", d.Pos, err)
				}
				r.close()
				r = newSDKRig(t, r.spec, r.st, meta)
				return fmt.Sprintf("restored checkpoint %d\n", meta.CheckpointID)
			default:
				t.Fatalf("%s: unknown command %q", d.Pos, d.Cmd)
			}
		}
		if err == nil && r.task.allDone() && !r.task.busy() && !r.finished {
			r.finished = true
			err = r.task.finish(ctx)
		}
		if err != nil {
			return fmt.Sprintf("error: %v\n", err)
		}
		out := r.sent()
		if chk := r.awaiting; chk > 0 && r.task.overtaking == 0 {
			r.awaiting = 0
			out += r.completed(chk)
		}
		return out
	})
}

// step gives the subtask one message, as its shell would after reading it.
func (r *sdkRig) step(ctx context.Context, m msg) error {
	r.task.took(m)
	return r.event(ctx, sdkEvent{m: &m})
}

// event steps the subtask with one event.
func (r *sdkRig) event(ctx context.Context, ev sdkEvent) error {
	err := r.task.step(ctx, ev)
	r.task.release()
	return err
}

const sdkRigJob = "job"

// startCheckpoint starts the coordinator's next checkpoint.
func (r *sdkRig) startCheckpoint() int64 {
	c := r.task.e.ck
	if c == nil {
		r.t.Fatal("the subtask is not checkpointing (sdk ... checkpointing)")
	}
	var chk int64
	c.step(func(n *coord.Coordinator[finalization]) []coord.Action[finalization] {
		chk = n.Next()
		return n.Start(r.clock.Now())
	})
	return chk
}

// completed waits for checkpoint chk's upload and commit and says what its
// snapshot of the subtask holds besides Pebble.
func (r *sdkRig) completed(chk int64) string {
	ctx := testCtx(r.t)
	r.task.e.ck.wg.Wait()
	meta, _, err := checkpoint.Latest(ctx, r.st, sdkRigJob)
	if err != nil || meta.CheckpointID != chk {
		return fmt.Sprintf("checkpoint %d did not complete (latest: %v, %v)\n", chk, meta, err)
	}
	sub := meta.Subtask(r.task.ckID())
	ts, err := decodeTaskState(sub.SourcePosition)
	if err != nil {
		r.t.Fatal(err)
	}
	pending := "none"
	if ts.PendingFile != "" {
		pending = "in a file"
	} else if n := r.count(ts.Pending); n > 0 {
		pending = fmt.Sprintf("%d elements", n)
	}
	deferred := ""
	if len(ts.Delayed) > 0 {
		deferred = fmt.Sprintf(", %d deferred residuals", len(ts.Delayed))
	}
	return fmt.Sprintf("checkpoint %d: pending input %s%s, input watermark %s, %d state files\n", chk, pending, deferred, tsString(ts.InWM), len(sub.Files))
}

// count counts the elements of chunks of input.
func (r *sdkRig) count(chunks [][]byte) int {
	n := 0
	for _, c := range chunks {
		if err := r.outWV.ForEach(c, func(wire.Element) error { n++; return nil }); err != nil {
			r.t.Fatal(err)
		}
	}
	return n
}

// timers lists the timers set in the subtask's Pebble: "<key> <window>
// fire=<T>".
func (r *sdkRig) timers() string {
	if r.task.keyed == nil {
		return "no state\n"
	}
	b := r.task.keyed.db.NewBundle()
	defer b.Discard()
	due, err := b.DueTimers(0, testMaxP, wire.MaxTimestamp, 1000)
	if err != nil {
		r.t.Fatal(err)
	}
	var out strings.Builder
	for _, x := range due {
		key, _ := readStr(r.t, x.Key)
		fmt.Fprintf(&out, "%s %s fire=%s\n", key, winString(r.t, x.Window), tsString(x.Fire))
	}
	if len(due) == 0 {
		return "none\n"
	}
	return out.String()
}

// close closes the subtask's state (a restore replaces it).
func (r *sdkRig) close() {
	if db := r.task.stateDB(); db != nil && !r.closed {
		db.Close()
	}
	r.closed = true
}

// newSDKRig builds the subtask an "sdk" command describes, from checkpoint
// restore if it is not nil (st is the checkpoint storage, nil for a new
// one).
func newSDKRig(t *testing.T, d *datadriven.TestData, st storage.Storage, restore *checkpoint.Metadata) *sdkRig {
	windows, winID := "fixed", "iw"
	d.MaybeScanArgs(t, "windows", &windows)
	if windows == "global" {
		winID = "gw"
	}
	senders := 1
	d.MaybeScanArgs(t, "senders", &senders)
	spec := *d // datadriven reuses d for the next command
	r := &sdkRig{t: t, out: make(inbox, 1024), clock: clockwork.NewFakeClockAt(time.UnixMilli(0)), spec: &spec, st: st}
	d.MaybeScanArgs(t, "timer", &r.timer)

	coders := testCoders()
	wv := wire.AddWindowedValue(coders, "kv", winID)
	r.outWV = mustWV(t, coders, wv)
	ws := windowing(plan.URNFixedWindows, pipepb.OutputTime_END_OF_WINDOW)
	if windows == "global" {
		ws = windowing(plan.URNGlobalWindows, pipepb.OutputTime_END_OF_WINDOW)
	}
	ws.WindowCoderId = winID
	s := &plan.Stage{ID: "s", Kind: plan.KindSDK, Name: "Fake", EnvID: "env", SourceID: "src", Input: "in",
		Outputs: []string{"out"}, SinkIDs: map[string]string{"out": "sink"}}
	if r.timer != "" {
		s.Stateful = true
		tc := wire.AddCoder(coders, wire.URNTimer, nil, "str", winID)
		s.Timers = []plan.TimerFamily{{Transform: famF.Transform, Family: famF.Family, Coder: tc, Domain: pipepb.TimeDomain_EVENT_TIME}}
	}
	p := &plan.Plan{
		Components: &pipepb.Components{Coders: coders,
			Pcollections:        map[string]*pipepb.PCollection{"in": {WindowingStrategyId: "ws"}},
			WindowingStrategies: map[string]*pipepb.WindowingStrategy{"ws": ws}},
		Stages: []*plan.Stage{s},
		PColls: map[string]*plan.PColl{
			"in":  {ID: "in", WireCoder: wv, ElemCoder: "kv"},
			"out": {ID: "out", WireCoder: wv, ElemCoder: "kv", Producer: s},
		},
	}
	o := Options{Parallelism: 1, MaxParallelism: testMaxP, Logger: slog.New(slog.DiscardHandler), Clock: r.clock}
	d.MaybeScanArgs(t, "timers-per-firing", &o.Limits.TimersPerFiring)
	d.MaybeScanArgs(t, "bundle-bytes", &o.Limits.BundleBytes)
	o.Limits.StatefulBundleBytes = o.Limits.BundleBytes
	h := &fakeHarness{script: r.doFn}
	o.StartWorker = h.start
	if d.HasArg("checkpointing") && r.st == nil {
		var err error
		if r.st, err = storage.NewFile(t.TempDir()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.st.Close() })
	}
	if r.st != nil {
		o.Checkpoint = &CheckpointOptions{Storage: r.st, Job: sdkRigJob, Retained: 2}
	}
	if d.HasArg("splittable") {
		s.Splittable = "sdf"
	}
	e := New(p, o)
	e.pool.addDescriptor("env", &fnpb.ProcessBundleDescriptor{Id: "s"})
	e.pool.addDescriptor("env", &fnpb.ProcessBundleDescriptor{Id: plan.DrainDescriptorID(s)})
	if r.st != nil {
		if err := e.setUpCheckpoints(testCtx(t), t.TempDir(), restore); err != nil {
			t.Fatal(err)
		}
		e.fail = func(err error) { t.Errorf("engine failed: %v", err) }
	}

	out := &output{pcoll: "out", wv: r.outWV, targets: []target{{port: 0, part: plan.Forward, inboxes: []inbox{r.out}}}}
	rt := &router{sender: "s/0", maxP: testMaxP, outs: map[string]*output{"out": out}, order: []*output{out}}
	base := subtask{stage: s, in: make(inbox), out: rt, ports: []portState{{senders: senders}}, e: e}
	if e.ck != nil {
		base.trig = make(chan int64, 1)
		if err := e.ck.add(base.ckID(), base.in, base.trig, checkpoint.KeyGroupRange{Start: 0, End: testMaxP}); err != nil {
			t.Fatal(err)
		}
	}
	var pool *splitPool
	if s.Splittable != "" && e.ck == nil {
		pool = newSplitPool(1)
		pool.clock = r.clock
	}
	task, err := newSDKTask(context.Background(), base, t.TempDir(), nil, pool)
	if err != nil {
		t.Fatal(err)
	}
	r.task = task
	t.Cleanup(r.close)
	if sub := base.restored(); sub != nil {
		ts, err := decodeTaskState(sub.SourcePosition)
		if err != nil {
			t.Fatal(err)
		}
		if err := task.restore(ts); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// doFn is the fake harness's bundle: it passes elements through, sets a
// timer per element if the stage has timers, and emits one element per
// timer fired.
func (r *sdkRig) doFn(_ context.Context, b *fakeBundle) (*fnpb.ProcessBundleResponse, error) {
	elems, timers := 0, 0
	var set []byte
	resp := &fnpb.ProcessBundleResponse{}
	drained := b.spec.Descriptor == plan.DrainDescriptorID(r.task.stage)
	for _, chunk := range b.spec.Inputs["src"] {
		err := r.outWV.ForEach(chunk, func(e wire.Element) error {
			elems++
			if r.task.stage.Splittable != "" {
				return r.poll(e, drained, b, resp)
			}
			b.emit("sink", wire.AppendWindowedValue(nil, e.Timestamp, e.Windows, nil, e.Value))
			if r.timer == "" {
				return nil
			}
			k, _, err := r.outWV.Elem.SplitKV(e.Value)
			if err != nil {
				return err
			}
			key, _ := readStr(r.t, k)
			for _, w := range e.Windows {
				x := tm{key: key, fire: e.Timestamp, hold: e.Timestamp}
				if r.timer == "end" {
					if x.fire, err = wire.WindowMaxTimestamp(r.outWV.Window, w); err != nil {
						return err
					}
				} else {
					var delay int64
					fmt.Sscanf(r.timer, "+%d", &delay)
					x.fire += delay
				}
				set = append(set, r.encodeTimer(x, w)...)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	dec := exec.MakeElementDecoder(r.timerCoder())
	for rd := bytes.NewReader(b.spec.Timers[famF]); rd.Len() > 0; {
		fv, err := dec.Decode(rd)
		if err != nil {
			return nil, err
		}
		tr := fv.Elm.(exec.TimerRecv)
		timers++
		fire := tr.FireTimestamp.Milliseconds()
		w := wire.GlobalWindow()
		if iw, ok := tr.Windows[0].(window.IntervalWindow); ok {
			w = iwin(iw.Start.Milliseconds(), iw.End.Milliseconds())
		}
		b.emit("sink", wire.AppendWindowedValue(nil, fire, [][]byte{w}, nil, kvBytes(tr.Key.Elm.(string), "fired@"+tsString(fire))))
	}
	line := fmt.Sprintf("bundle %d elements, %d timers", elems, timers)
	if drained {
		line = "drain " + line
	}
	if n := len(resp.ResidualRoots); n > 0 {
		line += fmt.Sprintf(", %d deferred", n)
	}
	r.bundles = append(r.bundles, line)
	if len(set) > 0 {
		b.setTimers(famF, set)
	}
	return resp, nil
}

// poll is the splittable DoFn of a polling source: it emits element e
// ("<key> <n>") and defers "<key> <n+1>" for a second, its output
// watermark at e's timestamp; drained, it emits "<key> <n>-truncated" and
// ends.
func (r *sdkRig) poll(e wire.Element, drained bool, b *fakeBundle, resp *fnpb.ProcessBundleResponse) error {
	k, v, err := r.outWV.Elem.SplitKV(e.Value)
	if err != nil {
		return err
	}
	key, _ := readStr(r.t, k)
	val, _ := readStr(r.t, v)
	if drained {
		b.emit("sink", wire.AppendWindowedValue(nil, e.Timestamp, e.Windows, nil, kvBytes(key, val+"-truncated")))
		return nil
	}
	b.emit("sink", wire.AppendWindowedValue(nil, e.Timestamp, e.Windows, nil, e.Value))
	var n int
	fmt.Sscan(val, &n)
	next := wire.AppendWindowedValue(nil, e.Timestamp, e.Windows, nil, kvBytes(key, fmt.Sprint(n+1)))
	resp.ResidualRoots = append(resp.ResidualRoots, &fnpb.DelayedBundleApplication{
		Application: &fnpb.BundleApplication{TransformId: "sdf", InputId: "in", Element: next,
			OutputWatermarks: map[string]*timestamppb.Timestamp{"out": timestamppb.New(time.UnixMilli(e.Timestamp))}},
		RequestedTimeDelay: durationpb.New(time.Second),
	})
	return nil
}

// tsString renders a timestamp, the end of the global window by name.
func tsString(ts int64) string {
	switch ts {
	case wire.EndOfGlobalWindow:
		return "endOfGlobal"
	case wire.MinTimestamp:
		return "min"
	case wire.MaxTimestamp:
		return "max"
	}
	return fmt.Sprint(ts)
}

// timerCoder is Beam's coder of the stage's timers: string keys, in the
// stage's windows.
func (r *sdkRig) timerCoder() *coder.Coder {
	if r.outWV.Window.URN == wire.URNGlobalWindow {
		return coder.NewT(coder.NewString(), coder.NewGlobalWindow())
	}
	return iwTimerCoder
}

// encodeTimer encodes timer x of window w as the Go SDK sets it.
func (r *sdkRig) encodeTimer(x tm, w []byte) []byte {
	var bw typex.Window = window.GlobalWindow{}
	if len(w) > 0 {
		s, e, err := wire.ReadIntervalWindow(w)
		if err != nil {
			r.t.Fatal(err)
		}
		bw = beamWin(s, e)
	}
	rv := x.recv()
	rv.Windows = []typex.Window{bw}
	return encodeTimer(r.t, r.timerCoder(), rv)
}

// sent renders and consumes the bundles run and what the subtask sent
// since last asked.
func (r *sdkRig) sent() string {
	var b strings.Builder
	for _, l := range r.bundles {
		b.WriteString(l + "\n")
	}
	r.bundles = nil
	b.WriteString(renderSent(r.t, drain(r.out), r.outWV, func(e wire.Element) (string, error) {
		k, v, err := r.outWV.Elem.SplitKV(e.Value)
		if err != nil {
			return "", err
		}
		key, _ := readStr(r.t, k)
		val, _ := readStr(r.t, v)
		return fmt.Sprintf("out %s %s ts=%s %s", key, val, tsString(e.Timestamp), winString(r.t, e.Windows[0])), nil
	}))
	return b.String()
}
