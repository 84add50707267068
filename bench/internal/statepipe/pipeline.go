// Package statepipe owns the stateful benchmark's pipeline, shared by
// bench/cmd/statebench (throughput against prism, checkpoints, memory) and
// bench/cmd/spbench (savepoints of its state): a deterministic generator
// (a bounded splittable DoFn) into a per-key count in ValueState with an
// event-time timer per key, checked by passert, and Seen, the count of
// events the counting DoFns have processed in this process.
package statepipe

import (
	"context"
	"reflect"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/sdf"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/rtrackers/offsetrange"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/stats"
)

// Spec describes the generated events: event i has key "k<i mod Keys>"
// and an event time spread evenly over [StartMillis, StartMillis+SpanMillis),
// which is exactly one fixed window.
type Spec struct {
	Events, Keys            int64
	StartMillis, SpanMillis int64
	Splits                  int64 // initial restrictions
}

// genFn is a bounded splittable DoFn emitting the events of a Spec: its
// restriction is a range of event numbers, so runners can split it at run
// time, and the output is the same however it is split.
type genFn struct{}

func (genFn) CreateInitialRestriction(s Spec) offsetrange.Restriction {
	return offsetrange.Restriction{Start: 0, End: s.Events}
}

func (genFn) SplitRestriction(s Spec, r offsetrange.Restriction) []offsetrange.Restriction {
	return r.EvenSplits(max(s.Splits, 1))
}

func (genFn) RestrictionSize(_ Spec, r offsetrange.Restriction) float64 {
	return float64(r.End - r.Start)
}

func (genFn) CreateTracker(r offsetrange.Restriction) *sdf.LockRTracker {
	return sdf.NewLockRTracker(offsetrange.NewTracker(r))
}

func (genFn) ProcessElement(rt *sdf.LockRTracker, s Spec, emit func(beam.EventTime, string, int64)) {
	r := rt.GetRestriction().(offsetrange.Restriction)
	buf := make([]byte, 0, 24)
	for i := r.Start; rt.TryClaim(i); i++ {
		buf = strconv.AppendInt(append(buf[:0], 'k'), i%s.Keys, 10)
		ts := s.StartMillis + i*s.SpanMillis/s.Events
		emit(mtime.FromMilliseconds(ts), string(buf), i)
	}
}

// Seen counts the events the counting DoFns (both pipelines) have
// processed in this process. The embedded runner (--runner=weir) runs the
// SDK's bundles in the pipeline's own process, so a benchmark reads the
// job's progress from it as it runs, to the element, without metrics
// that arrive only when a bundle ends.
var Seen atomic.Int64

var (
	eventsCounted = beam.NewCounter("statebench", "events_counted")
	keysFired     = beam.NewCounter("statebench", "keys_fired")
)

// countFn counts each key's events in ValueState. The first event of a
// key in a window sets an event-time timer at the window's end; when the
// watermark passes it, the timer emits the count and clears the state.
type countFn struct {
	Count state.Value[int64]
	Flush timers.EventTime
}

func (fn *countFn) ProcessElement(w beam.Window, sp state.Provider, tp timers.Provider, key string, _ int64, emit func(string, int64)) error {
	n, ok, err := fn.Count.Read(sp)
	if err != nil {
		return err
	}
	if !ok {
		fn.Flush.Set(tp, w.MaxTimestamp().ToTime())
	}
	Seen.Add(1)
	return fn.Count.Write(sp, n+1)
}

func (fn *countFn) OnTimer(ctx context.Context, sp state.Provider, tp timers.Provider, key string, _ timers.Context, emit func(string, int64)) error {
	n, _, err := fn.Count.Read(sp)
	if err != nil {
		return err
	}
	emit(key, n)
	eventsCounted.Inc(ctx, n)
	keysFired.Inc(ctx, 1)
	return fn.Count.Clear(sp)
}

func countOf(_ string, n int64) int64 { return n }

func init() {
	register.DoFn3x0[*sdf.LockRTracker, Spec, func(beam.EventTime, string, int64)](&genFn{})
	register.Emitter3[beam.EventTime, string, int64]()
	register.DoFn6x1[beam.Window, state.Provider, timers.Provider, string, int64, func(string, int64), error](&countFn{})
	register.Emitter2[string, int64]()
	register.Function2x1(countOf)
	beam.RegisterType(reflect.TypeOf((*Spec)(nil)).Elem())
}

// Build is the benchmark pipeline. It fails (through passert) unless the
// emitted counts sum to the number of events and every key fired once.
func Build(s beam.Scope, sp Spec) {
	events := beam.ParDo(s.Scope("Generate"), &genFn{}, beam.Create(s.Scope("Spec"), sp))
	windowed := beam.WindowInto(s, window.NewFixedWindows(time.Duration(sp.SpanMillis)*time.Millisecond), events)
	counts := beam.ParDo(s.Scope("CountPerKey"), &countFn{
		Count: state.MakeValueState[int64]("count"),
		Flush: timers.InEventTime("flush"),
	}, windowed)

	check := s.Scope("Check")
	global := beam.WindowInto(check, window.NewGlobalWindows(), beam.ParDo(check, countOf, counts))
	passert.Equals(check.Scope("SumIsEvents"), stats.Sum(check, global), sp.Events)
	passert.Equals(check.Scope("KeysFireOnce"), stats.CountElms(check, global), int(min(sp.Keys, sp.Events)))
}

// genGlobalFn emits the events of a Spec as (int64 key, event number) in
// the global window, without event times: the pipeline of issue 13 as a
// user wrote it. Its restrictions are genFn's.
type genGlobalFn struct{ genFn }

func (genGlobalFn) ProcessElement(rt *sdf.LockRTracker, s Spec, emit func(int64, int64)) {
	r := rt.GetRestriction().(offsetrange.Restriction)
	for i := r.Start; rt.TryClaim(i); i++ {
		emit(i%s.Keys, i)
	}
}

// globalCountFn counts each key's events in ValueState and sets an
// event-time timer at the end of the global window on every element, as
// many users write it; the timers fire when the input ends.
type globalCountFn struct {
	Count state.Value[int64]
	Flush timers.EventTime
}

func (fn *globalCountFn) ProcessElement(w beam.Window, sp state.Provider, tp timers.Provider, key int64, _ int64, _ func(int64, int64)) error {
	n, _, err := fn.Count.Read(sp)
	if err != nil {
		return err
	}
	fn.Flush.Set(tp, w.MaxTimestamp().ToTime())
	Seen.Add(1)
	return fn.Count.Write(sp, n+1)
}

func (fn *globalCountFn) OnTimer(ctx context.Context, sp state.Provider, tp timers.Provider, key int64, _ timers.Context, emit func(int64, int64)) error {
	n, _, err := fn.Count.Read(sp)
	if err != nil {
		return err
	}
	emit(key, n)
	eventsCounted.Inc(ctx, n)
	keysFired.Inc(ctx, 1)
	return fn.Count.Clear(sp)
}

func countOfInt(_ int64, n int64) int64 { return n }

func init() {
	register.DoFn3x0[*sdf.LockRTracker, Spec, func(int64, int64)](&genGlobalFn{})
	register.Emitter2[int64, int64]()
	register.DoFn6x1[beam.Window, state.Provider, timers.Provider, int64, int64, func(int64, int64), error](&globalCountFn{})
	register.Function2x1(countOfInt)
}

// BuildGlobal is the pipeline of issue 13's first case: the generator in
// the global window, a per-key count whose timer is set again on every
// element at the window's end, and two sums (keys, events) checked by
// passert.
func BuildGlobal(s beam.Scope, sp Spec) {
	events := beam.ParDo(s.Scope("Generate"), &genGlobalFn{}, beam.Create(s.Scope("Spec"), sp))
	counts := beam.ParDo(s.Scope("CountPerKey"), &globalCountFn{
		Count: state.MakeValueState[int64]("count"),
		Flush: timers.InEventTime("flush"),
	}, events)
	check := s.Scope("Check")
	n := beam.ParDo(check, countOfInt, counts)
	passert.Equals(check.Scope("SumIsEvents"), stats.Sum(check, n), sp.Events)
	passert.Equals(check.Scope("KeysFireOnce"), stats.CountElms(check, n), int(min(sp.Keys, sp.Events)))
}
