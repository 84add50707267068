package engine

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/state"
)

// newReadyTask is an sdkTask of a stage whose main input (strings in
// interval windows, one sender) reads side inputs with the given window
// mappings (one sender each), its DB set up as initSides does.
func newReadyTask(t *testing.T, windows ...sideWindowFn) *sdkTask {
	t.Helper()
	coders := testCoders()
	st := &plan.Stage{ID: "s", Name: "ReadSide"}
	task := &sdkTask{subtask: subtask{stage: st, e: &Engine{o: Options{Limits: DefaultLimits}}}, side: &sideState{inputs: map[[2]string]*sideInput{}}}
	task.inWV = mustWV(t, coders, wire.AddWindowedValue(coders, "str", "iw"))
	task.sideDB = openDB(t)
	task.ports = make([]portState, 1+len(windows))
	for i := range task.ports {
		task.ports[i].senders = 1
	}
	for i, w := range windows {
		s := newSideInput(plan.SideInput{Transform: "pardo", Local: fmt.Sprint("side", i)}, kvWV(t, "iw"), i, task.sideDB)
		s.window = w
		task.sides = append(task.sides, s)
	}
	if err := task.park.init(task.sideDB); err != nil {
		t.Fatal(err)
	}
	return task
}

func fixedFn(size int64) sideWindowFn {
	return func(ts int64) int64 { return lastWindowMax(ts, size, size, 0) }
}

func slidingFn(size, period int64) sideWindowFn {
	return func(ts int64) int64 { return lastWindowMax(ts, size, period, 0) }
}

// mainElem is a string element at ts in the interval windows given as
// start, end pairs.
func mainElem(ts int64, v string, bounds ...int64) []byte {
	var ws [][]byte
	for i := 0; i < len(bounds); i += 2 {
		ws = append(ws, iwin(bounds[i], bounds[i+1]))
	}
	return wire.AppendWindowedValue(nil, ts, ws, nil, str(v))
}

// takePending returns the pending input as "value@[start,end)" strings,
// and empties it.
func takePending(t *testing.T, task *sdkTask) []string {
	t.Helper()
	out := []string{}
	for _, c := range task.pending {
		err := task.inWV.ForEach(c, func(e wire.Element) error {
			v, _ := readStr(t, e.Value)
			var ws []string
			for _, w := range e.Windows {
				ws = append(ws, winString(t, w))
			}
			out = append(out, v+"@"+strings.Join(ws, ""))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	task.pending, task.pendingBytes = nil, 0
	return out
}

// send delivers a control message to a port, as the run loop does, then
// releases what became ready.
func send(t *testing.T, task *sdkTask, port int, kind msgKind, wm int64) {
	t.Helper()
	task.ports[port].observe(msg{kind: kind, port: port, sender: fmt.Sprint("up", port), wm: wm})
	if err := task.releaseParked(); err != nil {
		t.Fatal(err)
	}
}

func admitAll(t *testing.T, task *sdkTask, elems ...[]byte) {
	t.Helper()
	for _, e := range elems {
		if err := task.takeData(msg{kind: msgData, port: 0, data: e}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSideReadinessPerWindow(t *testing.T) {
	// Side 0 in fixed windows of 10, side 1 in sliding windows of 20 every
	// 10. Main window [0,10) needs side windows [0,10) and [0,20), so it
	// is ready once side 0 passes 9 and side 1 passes 19.
	task := newReadyTask(t, fixedFn(10), slidingFn(20, 10))
	send(t, task, 0, msgWatermark, 3)
	admitAll(t, task,
		mainElem(5, "a", 0, 10),
		mainElem(15, "b", 10, 20),
		mainElem(25, "c", 20, 30),
		mainElem(8, "ab", 0, 10, 10, 20), // two windows, two needs: split
	)
	check := func(step string, want ...string) {
		t.Helper()
		if got := takePending(t, task); !slices.Equal(got, want) {
			t.Errorf("%s: ran %q, want %q", step, got, want)
		}
	}
	checkHold := func(step string, want int64) {
		t.Helper()
		if got := task.mainWatermark(); got != want {
			t.Errorf("%s: main watermark %d, want %d", step, got, want)
		}
	}
	check("before side watermarks")
	checkHold("before side watermarks", 3)
	send(t, task, 0, msgWatermark, 30)
	checkHold("main watermark past parked input", 4) // held just below a@5
	send(t, task, 1, msgWatermark, 100)
	send(t, task, 2, msgWatermark, 19)
	check("side 1 at 19: [0,20) not complete")
	send(t, task, 2, msgWatermark, 20)
	check("side 1 past 19", "a@[0,10)", "ab@[0,10)")
	checkHold("after [0,10) ran", 7) // ab@[10,20) at 8 is parked
	// Input that is ready when it comes runs at once.
	admitAll(t, task, mainElem(9, "late", 0, 10))
	check("ready on arrival", "late@[0,10)")
	send(t, task, 2, msgWatermark, 35)
	check("side 1 past 29", "b@[10,20)", "ab@[10,20)")
	checkHold("after [10,20) ran", 24) // c@25 is parked
	send(t, task, 2, msgEOI, 0)
	check("side 1 ended", "c@[20,30)")
	if task.park.any {
		t.Error("input still parked")
	}
	checkHold("nothing parked", 30)
}

func TestSideReadinessUnknownWindowsWaitForTheEnd(t *testing.T) {
	// A side input whose windows the runner cannot map (nil) is ready only
	// once it has ended, whatever its watermark; batch input runs whole.
	task := newReadyTask(t, nil, fixedFn(10))
	admitAll(t, task, mainElem(1, "x", 0, 10), mainElem(2, "y", 0, 10))
	send(t, task, 1, msgWatermark, wire.MaxTimestamp-1)
	send(t, task, 2, msgEOI, 0)
	if got := takePending(t, task); len(got) != 0 {
		t.Fatalf("ran %q before the side input ended", got)
	}
	send(t, task, 1, msgEOI, 0)
	if got := takePending(t, task); !slices.Equal(got, []string{"x@[0,10)", "y@[0,10)"}) {
		t.Errorf("after the end ran %q", got)
	}
	// With every side input ended, input is not parked at all.
	admitAll(t, task, mainElem(3, "z", 0, 10))
	if got := takePending(t, task); !slices.Equal(got, []string{"z@[0,10)"}) || task.park.any {
		t.Errorf("after the end: ran %q, parked %v", got, task.park.any)
	}
}

func TestSideReadinessReleaseInBundles(t *testing.T) {
	// Parked input comes back a bundle's worth at a time (park.more says
	// there is more), in arrival order.
	task := newReadyTask(t, fixedFn(10))
	val := strings.Repeat("v", 64<<10)
	n := 2 * DefaultLimits.BundleBytes / len(val)
	for i := range n {
		admitAll(t, task, mainElem(int64(i%10), fmt.Sprint(i, val), 0, 10))
	}
	send(t, task, 1, msgWatermark, 10)
	var got int
	for rounds := 1; ; rounds++ {
		if task.pendingBytes > DefaultLimits.BundleBytes+len(val)+64 {
			t.Fatalf("round %d: %d bytes pending, more than a bundle", rounds, task.pendingBytes)
		}
		for _, s := range takePending(t, task) {
			if want := fmt.Sprint(got); !strings.HasPrefix(s, want+"v") {
				t.Fatalf("element %d is %.10q…", got, s)
			}
			got++
		}
		if !task.park.more {
			break
		}
		if err := task.releaseParked(); err != nil {
			t.Fatal(err)
		}
		if rounds > 10 {
			t.Fatal("release never ends")
		}
	}
	if got != n || task.park.any {
		t.Errorf("released %d of %d; parked left %v", got, n, task.park.any)
	}
}

func TestSideBoundAndNeeds(t *testing.T) {
	task := newReadyTask(t, fixedFn(10), fixedFn(100))
	if b := task.sideBound(); b != wire.MinTimestamp {
		t.Errorf("bound before watermarks %d", b)
	}
	send(t, task, 1, msgWatermark, 50)
	send(t, task, 2, msgWatermark, 40)
	if b := task.sideBound(); b != 40 {
		t.Errorf("bound %d, want the least side watermark 40", b)
	}
	send(t, task, 2, msgEOI, 0)
	send(t, task, 1, msgEOI, 0)
	if b := task.sideBound(); b != math.MaxInt64 {
		t.Errorf("bound after the end %d", b)
	}
	if n := task.windowNeed(iwin(0, 10)); n != 99 {
		t.Errorf("need of [0,10) %d, want 99 (the 100 ms side window)", n)
	}
	if n := task.windowNeed([]byte{1}); n != wire.MaxTimestamp {
		t.Errorf("need of an unreadable window %d, want the end", n)
	}
}

func TestSideReadinessRestoredFromCheckpoint(t *testing.T) {
	// Parked input and side inputs are in the DB, so its checkpoint holds
	// them: a subtask opened on the copy takes up its parked input.
	task := newReadyTask(t, fixedFn(10))
	if err := task.sides[0].add(kvElem(3, "k", "v", iwin(0, 10))); err != nil {
		t.Fatal(err)
	}
	admitAll(t, task, mainElem(7, "a", 0, 10), mainElem(17, "b", 10, 20))
	dir := t.TempDir() + "/chk"
	if err := task.stateDB().Checkpoint(dir); err != nil {
		t.Fatal(err)
	}
	re := newReadyTask(t, fixedFn(10))
	db, err := state.Open(state.Options{Dir: dir, MustExist: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	re.sideDB, re.sides[0].db = db, db
	re.side.inputs[[2]string{"pardo", "side0"}] = re.sides[0]
	if err := re.park.init(db); err != nil {
		t.Fatal(err)
	}
	if !re.park.any || re.park.need != 9 || re.park.hold() != 7 {
		t.Fatalf("restored parker: any %v need %d hold %d", re.park.any, re.park.need, re.park.hold())
	}
	send(t, re, 1, msgWatermark, 10)
	if got := takePending(t, re); !slices.Equal(got, []string{"a@[0,10)"}) {
		t.Errorf("released %q", got)
	}
	data, _ := getAll(t, newFnState(&bundleState{sideState: re.side}, 0), iterKey("pardo", "side0", iwin(0, 10)))
	if got := readStrs(t, data); !slices.Equal(got, []string{"k", "v"}) {
		t.Errorf("restored side input %q", got)
	}
}
