package engine

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
)

// stageProgress is what a stage has done so far: elements read on its
// main input and each subtask's output watermark.
type stageProgress struct {
	stage *plan.Stage
	in    atomic.Int64
	wms   []atomic.Int64 // per subtask, ms
}

// Progress is a snapshot of one stage.
type Progress struct {
	Stage     string
	Name      string
	Elements  int64 // read on its main input
	Watermark int64 // minimum output watermark of its subtasks
}

func newProgress(e *Engine) map[*plan.Stage]*stageProgress {
	m := map[*plan.Stage]*stageProgress{}
	for _, s := range e.plan.Stages {
		p := &stageProgress{stage: s, wms: make([]atomic.Int64, e.parallelism(s))}
		for i := range p.wms {
			p.wms[i].Store(wire.MinTimestamp)
		}
		m[s] = p
	}
	return m
}

// Progress returns every stage's progress.
func (e *Engine) Progress() []Progress {
	var out []Progress
	for _, s := range e.plan.Stages {
		p := e.progress[s]
		wm := wire.MaxTimestamp
		for i := range p.wms {
			wm = min(wm, p.wms[i].Load())
		}
		out = append(out, Progress{Stage: s.ID, Name: s.Name, Elements: p.in.Load(), Watermark: wm})
	}
	return out
}

// countInput adds the elements the SDK reports it read on a stage's input.
func (e *Engine) countInput(s *plan.Stage, n int64) { e.progress[s].in.Add(n) }

// setWatermark records a subtask's output watermark.
func (e *Engine) setWatermark(s *plan.Stage, subtask int, wm int64) {
	e.progress[s].wms[subtask].Store(wm)
}

// FormatWatermark renders a watermark for people.
func FormatWatermark(wm int64) string {
	switch {
	case wm <= wire.MinTimestamp:
		return "-inf"
	case wm >= wire.MaxTimestamp:
		return "+inf"
	}
	return time.UnixMilli(wm).UTC().Format("2006-01-02T15:04:05.000Z")
}

// reportProgress logs the job's progress every interval until ctx ends.
func (e *Engine) reportProgress(ctx context.Context, every time.Duration) {
	t := e.o.Clock.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
		var b strings.Builder
		for _, p := range e.Progress() {
			fmt.Fprintf(&b, " %s(%s): %d in, wm %s;", p.Stage, p.Name, p.Elements, FormatWatermark(p.Watermark))
		}
		e.o.Logger.Info("progress" + strings.TrimSuffix(b.String(), ";"))
	}
}
