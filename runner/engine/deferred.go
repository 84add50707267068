package engine

import (
	"time"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/weir-runner/weir/runner/wire"
)

// residual is work a splittable DoFn deferred: its encoded element, the
// output watermark it reported, and when to resume it.
type residual struct {
	data    []byte
	wm      int64
	readyAt time.Time
}

// residualWatermark is the output watermark a residual holds: just below
// the lowest output watermark it reports (the minimum timestamp if it
// reports none). The SDK's estimate W means no later output before W, so
// output at W itself may still come, and weir's watermarks say everything
// at or before them is complete (see holdBelow).
func residualWatermark(a *fnpb.BundleApplication) int64 {
	wm := wire.MaxTimestamp
	for _, ts := range a.GetOutputWatermarks() {
		wm = min(wm, ts.AsTime().UnixMilli())
	}
	if len(a.GetOutputWatermarks()) == 0 {
		return wire.MinTimestamp
	}
	return holdBelow(wm)
}

// holdBelow is the highest watermark that output timestamped at ts may
// still follow. A weir watermark W says that every element at or before W
// has arrived: GroupByKeys fire windows whose max timestamp is at or
// before W, and timers due at or before W fire. So a hold at ts (a timer's
// output timestamp, an SDF's watermark estimate) keeps the watermark at
// ts-1; else a window ending at ts, such as the global window for timers
// set at its end, would fire before that output reached it.
func holdBelow(ts int64) int64 {
	if ts >= wire.MaxTimestamp || ts <= wire.MinTimestamp {
		return ts
	}
	return ts - 1
}

// resumeAt is when a deferred residual resumes: at once while draining.
func (t *sdkTask) resumeAt(now time.Time, delay time.Duration) time.Time {
	if t.draining {
		return now
	}
	return now.Add(delay)
}

// drainCh is the engine's drain signal for splittable stages (nil, which
// never fires, for the others or once draining).
func (t *sdkTask) drainCh() <-chan struct{} {
	if t.stage.Splittable == "" || t.draining {
		return nil
	}
	return t.e.drain
}

// startDrain switches a splittable stage to its drain descriptor and makes
// every deferred residual due now, so restrictions are truncated and end.
func (t *sdkTask) startDrain() {
	t.draining = true
	for i := range t.delayed {
		t.delayed[i].readyAt = time.Time{}
	}
}

// readyDelayed moves residuals due by now into the pending input.
func (t *sdkTask) readyDelayed(now time.Time) {
	kept := t.delayed[:0]
	for _, r := range t.delayed {
		if r.readyAt.After(now) {
			kept = append(kept, r)
			continue
		}
		t.addPending(r.data)
	}
	t.delayed = kept
}

// hold is the output watermark hold of deferred residuals.
func (t *sdkTask) hold() int64 {
	h := wire.MaxTimestamp
	for _, r := range t.delayed {
		h = min(h, r.wm)
	}
	return h
}

// nextWake says how long to wait before the next deferred residual is due
// or processing-time timers must be checked.
func (t *sdkTask) nextWake() (time.Duration, bool) {
	var d time.Duration
	ok := false
	for _, r := range t.delayed {
		if w := r.readyAt.Sub(t.e.now()); !ok || w < d {
			d, ok = max(w, 0), true
		}
	}
	if t.keyed != nil && t.keyed.hasDomain(processingTime) && (!ok || d > procTimerCheck) {
		d, ok = procTimerCheck, true
	}
	return d, ok
}

// procTimerCheck is how often processing-time timers are looked for.
const procTimerCheck = 20 * time.Millisecond
