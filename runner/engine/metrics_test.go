package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/metricsx"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/cockroachdb/datadriven"
	"github.com/jonboulle/clockwork"
	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/runner/engine/coord"
	"github.com/weir-runner/weir/runner/plan"
)

// sub0 is the subtask the single-subtask tests report bundles of.
var sub0 = checkpoint.SubtaskID{Stage: "s", Subtask: 0}

func userLabels(transform, ns, name string) map[string]string {
	return map[string]string{"PTRANSFORM": transform, "NAMESPACE": ns, "NAME": name}
}

func counterMI(t *testing.T, transform, name string, v int64) *pipepb.MonitoringInfo {
	t.Helper()
	p, err := metricsx.Int64Counter(v)
	if err != nil {
		t.Fatal(err)
	}
	return &pipepb.MonitoringInfo{Urn: metricsx.UrnToString(metricsx.UrnUserSumInt64), Type: typeSum,
		Labels: userLabels(transform, "ns", name), Payload: p}
}

func distMI(t *testing.T, transform, name string, count, sum, lo, hi int64) *pipepb.MonitoringInfo {
	t.Helper()
	p, err := metricsx.Int64Distribution(count, sum, lo, hi)
	if err != nil {
		t.Fatal(err)
	}
	return &pipepb.MonitoringInfo{Urn: metricsx.UrnToString(metricsx.UrnUserDistInt64), Type: typeDist,
		Labels: userLabels(transform, "ns", name), Payload: p}
}

func gaugeMI(t *testing.T, transform, name string, ms, v int64) *pipepb.MonitoringInfo {
	t.Helper()
	p, err := metricsx.Int64Latest(time.UnixMilli(ms), v)
	if err != nil {
		t.Fatal(err)
	}
	return &pipepb.MonitoringInfo{Urn: metricsx.UrnToString(metricsx.UrnUserLatestMsInt64), Type: typeLast,
		Labels: userLabels(transform, "ns", name), Payload: p}
}

// results decodes a snapshot with Beam, as a job's metrics are read by
// the SDK, into sorted lines.
func results(snap []*pipepb.MonitoringInfo) []string {
	res := metricsx.FromMonitoringInfos(&pipepb.Pipeline{}, snap, nil).AllMetrics()
	var out []string
	for _, c := range res.Counters() {
		out = append(out, fmt.Sprintf("counter %s %s/%s = %d", c.Key.Step, c.Key.Namespace, c.Key.Name, c.Attempted))
	}
	for _, d := range res.Distributions() {
		v := d.Attempted
		out = append(out, fmt.Sprintf("dist %s %s/%s = count %d sum %d min %d max %d", d.Key.Step, d.Key.Namespace, d.Key.Name, v.Count, v.Sum, v.Min, v.Max))
	}
	for _, g := range res.Gauges() {
		out = append(out, fmt.Sprintf("gauge %s %s/%s = %d at %d", g.Key.Step, g.Key.Namespace, g.Key.Name, g.Attempted.Value, g.Attempted.Timestamp.UnixMilli()))
	}
	sort.Strings(out)
	return out
}

func checkResults(t *testing.T, snap []*pipepb.MonitoringInfo, want ...string) {
	t.Helper()
	got := results(snap)
	sort.Strings(want)
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Errorf("metrics:\n  %q\nwant:\n  %q", got, want)
	}
}

func TestMetricsAggregate(t *testing.T) {
	var snaps [][]*pipepb.MonitoringInfo
	m := newMetrics(func(a, c []*pipepb.MonitoringInfo) {
		if fmt.Sprint(results(a)) != fmt.Sprint(results(c)) {
			t.Errorf("without checkpoints, committed %q differs from attempted %q", results(c), results(a))
		}
		snaps = append(snaps, a)
	})

	// Bundle 1.
	m.add(sub0, []*pipepb.MonitoringInfo{
		counterMI(t, "pardo", "elems", 3),
		counterMI(t, "other", "elems", 100), // same name, other transform: separate
		distMI(t, "pardo", "size", 2, 10, 3, 7),
		gaugeMI(t, "pardo", "last", 100, 1),
	})
	checkResults(t, snaps[len(snaps)-1],
		"counter pardo ns/elems = 3",
		"counter other ns/elems = 100",
		"dist pardo ns/size = count 2 sum 10 min 3 max 7",
		"gauge pardo ns/last = 1 at 100",
	)
	// Bundle 2: sums add, distributions merge, an older gauge value loses.
	m.add(sub0, []*pipepb.MonitoringInfo{
		counterMI(t, "pardo", "elems", 4),
		distMI(t, "pardo", "size", 1, 1, 1, 1),
		gaugeMI(t, "pardo", "last", 50, 2),
	})
	checkResults(t, snaps[len(snaps)-1],
		"counter pardo ns/elems = 7",
		"counter other ns/elems = 100",
		"dist pardo ns/size = count 3 sum 11 min 1 max 7",
		"gauge pardo ns/last = 1 at 100",
	)
	// Bundle 3: a newer gauge value wins; negative values and a larger max.
	m.add(sub0, []*pipepb.MonitoringInfo{
		counterMI(t, "pardo", "elems", -2),
		distMI(t, "pardo", "size", 2, 40, 5, 35),
		gaugeMI(t, "pardo", "last", 200, -3),
		gaugeMI(t, "pardo", "last", 150, 9), // older than 200, same bundle
	})
	checkResults(t, snaps[len(snaps)-1],
		"counter pardo ns/elems = 5",
		"counter other ns/elems = 100",
		"dist pardo ns/size = count 5 sum 51 min 1 max 35",
		"gauge pardo ns/last = -3 at 200",
	)
	// An equal timestamp: the later report wins.
	m.add(sub0, []*pipepb.MonitoringInfo{gaugeMI(t, "pardo", "last", 200, 8)})
	checkResults(t, snaps[len(snaps)-1],
		"counter pardo ns/elems = 5",
		"counter other ns/elems = 100",
		"dist pardo ns/size = count 5 sum 51 min 1 max 35",
		"gauge pardo ns/last = 8 at 200",
	)
	if len(snaps) != 4 {
		t.Errorf("%d notifications for 4 bundles with user metrics", len(snaps))
	}
}

func TestMetricsIgnoresNonUser(t *testing.T) {
	calls := 0
	m := newMetrics(func(_, _ []*pipepb.MonitoringInfo) { calls++ })
	p, _ := metricsx.Int64Counter(5)
	d, _ := metricsx.Int64Distribution(1, 2, 2, 2)
	m.add(sub0, []*pipepb.MonitoringInfo{
		// PCollection element count: no PTRANSFORM label.
		{Urn: metricsx.UrnToString(metricsx.UrnElementCount), Type: typeSum, Labels: map[string]string{"PCOLLECTION": "pc"}, Payload: p},
		// Execution time: a transform but no metric name.
		{Urn: metricsx.UrnToString(metricsx.UrnProcessBundle), Type: typeSum, Labels: map[string]string{"PTRANSFORM": "pardo"}, Payload: p},
		// Sampled byte size: a distribution of a PCollection.
		{Urn: metricsx.UrnToString(metricsx.UrnSampledByteSize), Type: typeDist, Labels: map[string]string{"PCOLLECTION": "pc"}, Payload: d},
		// A user metric type weir does not aggregate.
		{Urn: metricsx.UrnToString(metricsx.UrnUserSumFloat64), Type: "beam:metrics:sum_double:v1", Labels: userLabels("pardo", "ns", "f"), Payload: []byte{0, 0, 0, 0, 0, 0, 0, 0}},
		// A user counter with a payload that does not decode.
		{Urn: metricsx.UrnToString(metricsx.UrnUserSumInt64), Type: typeSum, Labels: userLabels("pardo", "ns", "bad"), Payload: []byte{0x80}},
		// An empty name.
		{Urn: metricsx.UrnToString(metricsx.UrnUserSumInt64), Type: typeSum, Labels: userLabels("pardo", "ns", ""), Payload: p},
	})
	m.add(sub0, nil)
	if calls != 0 || len(m.attempted.cells) != 0 {
		t.Errorf("non-user metrics kept %d cells and notified %d times", len(m.attempted.cells), calls)
	}
	m.add(sub0, []*pipepb.MonitoringInfo{counterMI(t, "pardo", "c", 1)})
	if calls != 1 || len(m.attempted.cells) != 1 {
		t.Errorf("one user metric: %d cells, %d notifications", len(m.attempted.cells), calls)
	}
}

func TestMetricsLabelsIdentifyCells(t *testing.T) {
	var last []*pipepb.MonitoringInfo
	m := newMetrics(func(s, _ []*pipepb.MonitoringInfo) { last = s })
	a := counterMI(t, "pardo", "c", 1)
	b := counterMI(t, "pardo", "c", 2)
	b.Labels = userLabels("pardo", "other-ns", "c")
	m.add(sub0, []*pipepb.MonitoringInfo{a, b, counterMI(t, "pardo", "c", 10)})
	checkResults(t, last, "counter pardo ns/c = 11", "counter pardo other-ns/c = 2")
}

func TestMetricsConcurrentBundles(t *testing.T) {
	var mu sync.Mutex
	var last []*pipepb.MonitoringInfo
	m := newMetrics(func(s, _ []*pipepb.MonitoringInfo) { mu.Lock(); last = s; mu.Unlock() })
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				m.add(sub0, []*pipepb.MonitoringInfo{
					counterMI(t, "pardo", "n", 1),
					distMI(t, "pardo", "d", 1, int64(i), int64(i), int64(i)),
					gaugeMI(t, "pardo", "g", int64(g*1000+i), int64(g)),
				})
			}
		}()
	}
	wg.Wait()
	m.mu.Lock()
	snap := m.attempted.infos()
	m.mu.Unlock()
	checkResults(t, snap,
		"counter pardo ns/n = 800",
		"dist pardo ns/d = count 800 sum 39600 min 0 max 99",
		"gauge pardo ns/g = 7 at 7099",
	)
	mu.Lock()
	defer mu.Unlock()
	if len(last) != 3 {
		t.Errorf("last notification has %d metrics", len(last))
	}
}

// counts reads counter ns/n of a notification: attempted and committed.
func counts(t *testing.T, attempted, committed []*pipepb.MonitoringInfo) (int64, int64) {
	t.Helper()
	var a, c int64
	for _, r := range metricsx.FromMonitoringInfos(&pipepb.Pipeline{}, attempted, committed).AllMetrics().Counters() {
		if r.Key.Name != "n" {
			t.Fatalf("unexpected counter %+v", r.Key)
		}
		a, c = r.Attempted, r.Committed
	}
	return a, c
}

// handOverRig is a checkpointed job's metrics bookkeeping driven through
// the coordinator: bundles of subtasks a and b, checkpoints started,
// snapshotted, aborted and committed (to file storage), subtasks
// finishing, restarts, and the job's end.
type handOverRig struct {
	t    *testing.T
	st   storage.Storage
	e    *Engine
	c    *coordinator
	cur  int64 // the checkpoint last started
	a, b int64 // the last notification: attempted, committed
	// Each bundle leaves a finalization with its subtask until a snapshot
	// or the subtask's finish hands it to the coordinator; finalized counts
	// those the coordinator ran.
	fin       map[string][]finalization
	bundles   int
	finalized map[string]int
}

// Finalize records a finalization (the rig is the harness of its bundles).
func (r *handOverRig) Finalize(_ context.Context, inst string) error {
	r.finalized[inst]++
	return nil
}

// take hands over subtask name's bundles waiting for finalization.
func (r *handOverRig) take(name string) []finalization {
	f := r.fin[name]
	r.fin[name] = nil
	return f
}

const rigJob = "rig"

var rigSubtasks = map[string]checkpoint.SubtaskID{"a": {Stage: "s", Subtask: 0}, "b": {Stage: "s", Subtask: 1}}

func newHandOverRig(t *testing.T) *handOverRig {
	st, err := storage.NewFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &handOverRig{t: t, st: st, fin: map[string][]finalization{}, finalized: map[string]int{}}
	r.e = &Engine{plan: &plan.Plan{}, o: Options{MaxParallelism: 128, Clock: clockwork.NewRealClock(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	r.e.metrics = newMetrics(func(a, c []*pipepb.MonitoringInfo) { r.a, r.b = counts(t, a, c) })
	r.e.fail = func(err error) { t.Errorf("engine failed: %v", err) }
	r.run(nil)
	return r
}

// run starts a run of the job from restore (nil: from the start).
func (r *handOverRig) run(restore *checkpoint.Metadata) {
	next, err := checkpoint.NextID(context.Background(), r.st, rigJob)
	if err != nil {
		r.t.Fatal(err)
	}
	r.c = newCoordinator(context.Background(), r.e, CheckpointOptions{Storage: r.st, Job: rigJob, Restore: restore, Retained: 2}, next)
	for i, name := range []string{"a", "b"} {
		if err := r.c.add(rigSubtasks[name], make(inbox, 1), make(chan int64, 1), checkpoint.KeyGroupRange{Start: 64 * i, End: 64 * (i + 1)}); err != nil {
			r.t.Fatal(err)
		}
	}
	r.e.ck = r.c
	r.e.metrics.rewind(restore, true)
}

// latest is the job's latest completed checkpoint (nil if none).
func (r *handOverRig) latest() *checkpoint.Metadata {
	m, _, err := checkpoint.Latest(context.Background(), r.st, rigJob)
	if errors.Is(err, checkpoint.ErrNoCheckpoint) {
		return nil
	} else if err != nil {
		r.t.Fatal(err)
	}
	return m
}

// do runs one step of a script.
func (r *handOverRig) do(step string) {
	f := strings.Fields(step)
	switch f[0] {
	case "bundle": // bundle <subtask> <n>: a bundle that counted n
		n, _ := strconv.ParseInt(f[2], 10, 64)
		r.e.metrics.add(rigSubtasks[f[1]], []*pipepb.MonitoringInfo{counterMI(r.t, "pardo", "n", n)})
		r.bundles++
		r.fin[f[1]] = append(r.fin[f[1]], finalization{w: r, inst: strconv.Itoa(r.bundles)})
	case "start": // the coordinator starts a checkpoint
		r.c.step(func(n *coord.Coordinator[finalization]) []coord.Action[finalization] {
			r.cur = n.Next()
			return n.Start(time.Now())
		})
	case "snap": // snap <subtask>: its snapshot for the checkpoint last started
		r.c.snapshot(r.cur, rigSubtasks[f[1]], nil, "", r.take(f[1]))
	case "finish": // finish <subtask>
		r.c.finished(rigSubtasks[f[1]], r.take(f[1]))
	case "abort":
		r.c.abort(r.cur, errors.New("test abort"))
	case "restart": // the run fails and restarts in process from the latest checkpoint
		r.fin = map[string][]finalization{} // the workers stop: their callbacks are gone
		r.run(r.latest())
	case "restore-from": // restore-from <checkpoint>: a restart from that one
		id, _ := strconv.ParseInt(f[1], 10, 64)
		m, err := checkpoint.ReadMetadata(context.Background(), r.st, rigJob, id)
		if err != nil {
			r.t.Fatal(err)
		}
		r.run(m)
	case "resume": // a new process resumes the job from its latest checkpoint
		r.fin = map[string][]finalization{}
		r.e.metrics = newMetrics(r.e.metrics.notify)
		r.a, r.b = 0, 0
		r.run(r.latest())
	case "end": // every subtask has finished: the job ends
		r.c.jobDone(context.Background())
	default:
		r.t.Fatalf("unknown step %q", step)
	}
	r.c.wg.Wait() // uploads and commits
}

// runHandOverScript runs a script of testdata/handover: a
// checkpointed job's metrics and finalizations driven through the
// coordinator (bundles of subtasks a and b, checkpoints started,
// snapshotted, aborted and committed to file storage, subtasks finishing,
// restarts, the job's end; see handOverRig.do). After each step it prints
// the last metrics notification (committed counts the bundles a completed
// checkpoint holds, or that the finished job ran, each once; attempted
// counts every successful bundle) and how many bundles have been
// finalized (each exactly once, when the first completed checkpoint
// holding its effects commits or the job ends); "saved" prints the
// metrics the latest checkpoint recorded.
func runHandOverScript(t *testing.T, path string) {
	r := newHandOverRig(t)
	datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
		if d.Cmd == "saved" {
			m := r.latest()
			if m == nil || m.Metrics == nil {
				return fmt.Sprintf("the latest checkpoint %v has no metrics\n", m)
			}
			a, c := counts(t, aggFromCheckpoint(m.Metrics.Attempted).infos(), aggFromCheckpoint(m.Metrics.Committed).infos())
			return fmt.Sprintf("checkpoint %d: attempted %d, committed %d\n", m.CheckpointID, a, c)
		}
		step := d.Cmd
		for _, a := range d.CmdArgs {
			step += " " + a.String()
		}
		r.do(step)
		for inst, n := range r.finalized {
			if n != 1 {
				t.Fatalf("%s: bundle %s finalized %d times", d.Pos, inst, n)
			}
		}
		return fmt.Sprintf("attempted %d, committed %d, finalized %d\n", r.a, r.b, len(r.finalized))
	})
}

// TestMetricsCheckpointRoundTrip: every metric type a checkpoint records
// reads back as it was; a type weir does not aggregate, or a value count
// that does not fit the type, is left out.
func TestMetricsCheckpointRoundTrip(t *testing.T) {
	a := newAgg()
	a.addInfos([]*pipepb.MonitoringInfo{
		counterMI(t, "pardo", "c", 5),
		distMI(t, "pardo", "d", 3, 12, -1, 9),
		gaugeMI(t, "pardo", "g", 1234, -7),
	})
	saved := a.toCheckpoint()
	want := []string{
		"counter pardo ns/c = 5",
		"dist pardo ns/d = count 3 sum 12 min -1 max 9",
		"gauge pardo ns/g = -7 at 1234",
	}
	checkResults(t, aggFromCheckpoint(saved).infos(), want...)
	bad := append(saved,
		checkpoint.Metric{URN: "u", Type: "beam:metrics:sum_double:v1", Labels: userLabels("pardo", "ns", "f"), Values: []int64{1}},
		checkpoint.Metric{URN: metricsx.UrnToString(metricsx.UrnUserSumInt64), Type: typeSum, Labels: userLabels("pardo", "ns", "two"), Values: []int64{1, 2}},
	)
	checkResults(t, aggFromCheckpoint(bad).infos(), want...)
}

// TestCrashAfterCommitAtTheEnd: a commit under way as the job ends that
// fails the run after committing (a crash right after it) makes the end
// fail too, so that the job restarts from that checkpoint instead of
// reporting success with the finalizations of its last bundles lost.
func TestCrashAfterCommitAtTheEnd(t *testing.T) {
	r := newHandOverRig(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	crash := errors.New("crash after commit")
	r.e.fail = cancel
	r.c.o.Fault = func(point string, _ int64) error {
		if point == FaultAfterCommit {
			return crash
		}
		return nil
	}
	for _, step := range []string{"bundle a 1", "bundle b 1", "start", "snap a", "finish b"} {
		r.do(step)
	}
	if r.latest() == nil {
		t.Fatal("the checkpoint did not commit")
	}
	if err := r.c.jobDone(ctx); !errors.Is(err, crash) {
		t.Errorf("the job's end returned %v, want the crash", err)
	}
}
