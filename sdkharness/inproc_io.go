package sdkharness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/metrics"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/exec"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/metricsx"
	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/engine/harness"
)

// localData is an in-process bundle's data channel: its input is the
// spec's, and what the plan writes is kept per sink and timer stream.
type localData struct {
	spec    harness.BundleSpec
	written atomic.Int64 // bytes written to data sinks so far

	mu      sync.Mutex
	sent    map[harness.TimerKey]bool
	sinks   map[string]*bytes.Buffer
	timerWs map[harness.TimerKey]*bytes.Buffer
}

func newLocalData(spec harness.BundleSpec) *localData {
	return &localData{spec: spec, sent: map[harness.TimerKey]bool{}, sinks: map[string]*bytes.Buffer{}, timerWs: map[harness.TimerKey]*bytes.Buffer{}}
}

// OpenElementChan yields the source's input chunks, then the fired timers
// of the transforms it expects (each timer stream once per bundle).
func (d *localData) OpenElementChan(_ context.Context, id exec.StreamID, expectedTimerTransforms []string) (<-chan exec.Elements, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	chunks := d.spec.Inputs[id.PtransformID]
	var timers []exec.Elements
	for k, buf := range d.spec.Timers {
		if d.sent[k] || !slices.Contains(expectedTimerTransforms, k.Transform) {
			continue
		}
		d.sent[k] = true
		timers = append(timers, exec.Elements{Timers: buf, TimerFamilyID: k.Family, PtransformID: k.Transform})
	}
	ch := make(chan exec.Elements, len(chunks)+len(timers))
	for _, c := range chunks {
		ch <- exec.Elements{Data: c, PtransformID: id.PtransformID}
	}
	for _, t := range timers {
		ch <- t
	}
	close(ch)
	return ch, nil
}

func (d *localData) OpenWrite(_ context.Context, id exec.StreamID) (io.WriteCloser, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return countingWriter{bufferFor(d.sinks, id.PtransformID), &d.written}, nil
}

func (d *localData) OpenTimerWrite(_ context.Context, id exec.StreamID, family string) (io.WriteCloser, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return nopCloser{bufferFor(d.timerWs, harness.TimerKey{Transform: id.PtransformID, Family: family})}, nil
}

// bufferFor returns bufs[k], adding an empty buffer if there is none.
func bufferFor[K comparable](bufs map[K]*bytes.Buffer, k K) *bytes.Buffer {
	b := bufs[k]
	if b == nil {
		b = &bytes.Buffer{}
		bufs[k] = b
	}
	return b
}

func (d *localData) outputs() map[string][]byte { return written(d.sinks) }

func (d *localData) timerOutputs() map[harness.TimerKey][]byte { return written(d.timerWs) }

// written returns what was written to each buffer that is not empty.
func written[K comparable](bufs map[K]*bytes.Buffer) map[K][]byte {
	out := make(map[K][]byte, len(bufs))
	for k, b := range bufs {
		if b.Len() > 0 {
			out[k] = b.Bytes()
		}
	}
	return out
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// countingWriter counts what it writes, for OutputBytes.
type countingWriter struct {
	w *bytes.Buffer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return c.w.Write(p)
}

func (countingWriter) Close() error { return nil }

// localState is an in-process bundle's state channel: bag reads, appends
// and clears are direct calls on the bundle's harness.State; every other
// request is a StateRequest handed straight to its StateServer. After end
// (the bundle is over) every request is refused, as the Fn API path
// refuses requests for an ended bundle.
type localState struct {
	*StateServer
}

func (s *localState) call(req *fnpb.StateRequest) (*fnpb.StateResponse, error) {
	req.InstructionId = s.inst
	resp := s.HandleState(req)
	if msg := resp.GetError(); msg != "" {
		return nil, fmt.Errorf("state request on bundle %q: %s", s.inst, msg)
	}
	return resp, nil
}

func (s *localState) reader(k *fnpb.StateKey) io.ReadCloser { return &localReader{s: s, key: k} }

func (s *localState) writer(k *fnpb.StateKey, clear bool) io.Writer {
	return &localWriter{s: s, key: k, clear: clear}
}

// localReader reads one state key, following continuation tokens.
type localReader struct {
	s       *localState
	key     *fnpb.StateKey
	token   []byte
	started bool
	buf     []byte
}

func (r *localReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.started && len(r.token) == 0 {
			return 0, io.EOF
		}
		resp, err := r.s.call(&fnpb.StateRequest{StateKey: r.key, Request: &fnpb.StateRequest_Get{Get: &fnpb.StateGetRequest{ContinuationToken: r.token}}})
		if err != nil {
			return 0, err
		}
		r.started = true
		r.buf, r.token = resp.GetGet().GetData(), resp.GetGet().GetContinuationToken()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *localReader) Close() error { return nil }

// localWriter appends to, or clears, one state key on each Write.
type localWriter struct {
	s     *localState
	key   *fnpb.StateKey
	clear bool
}

func (w *localWriter) Write(p []byte) (int, error) {
	req := &fnpb.StateRequest{StateKey: w.key}
	if w.clear {
		req.Request = &fnpb.StateRequest_Clear{Clear: &fnpb.StateClearRequest{}}
	} else {
		req.Request = &fnpb.StateRequest_Append{Append: &fnpb.StateAppendRequest{Data: bytes.Clone(p)}}
	}
	if _, err := w.s.call(req); err != nil {
		return 0, err
	}
	return len(p), nil
}

func multimapKey(id exec.StreamID, userStateID string, key, w, mk []byte) *fnpb.StateKey {
	return &fnpb.StateKey{Type: &fnpb.StateKey_MultimapUserState_{MultimapUserState: &fnpb.StateKey_MultimapUserState{
		TransformId: id.PtransformID, UserStateId: userStateID, Window: w, Key: key, MapKey: mk}}}
}

func multimapKeysKey(id exec.StreamID, userStateID string, key, w []byte) *fnpb.StateKey {
	return &fnpb.StateKey{Type: &fnpb.StateKey_MultimapKeysUserState_{MultimapKeysUserState: &fnpb.StateKey_MultimapKeysUserState{
		TransformId: id.PtransformID, UserStateId: userStateID, Window: w, Key: key}}}
}

func orderedListKey(id exec.StreamID, userStateID string, key, w []byte, r *fnpb.OrderedListRange) *fnpb.StateKey {
	return &fnpb.StateKey{Type: &fnpb.StateKey_OrderedListUserState_{OrderedListUserState: &fnpb.StateKey_OrderedListUserState{
		TransformId: id.PtransformID, UserStateId: userStateID, Window: w, Key: key, Range: r}}}
}

func (s *localState) OpenIterableSideInput(_ context.Context, id exec.StreamID, sideInputID string, w []byte) (io.ReadCloser, error) {
	return s.reader(&fnpb.StateKey{Type: &fnpb.StateKey_IterableSideInput_{IterableSideInput: &fnpb.StateKey_IterableSideInput{
		TransformId: id.PtransformID, SideInputId: sideInputID, Window: w}}}), nil
}

func (s *localState) OpenMultiMapSideInput(_ context.Context, id exec.StreamID, sideInputID string, key, w []byte) (io.ReadCloser, error) {
	return s.reader(&fnpb.StateKey{Type: &fnpb.StateKey_MultimapSideInput_{MultimapSideInput: &fnpb.StateKey_MultimapSideInput{
		TransformId: id.PtransformID, SideInputId: sideInputID, Window: w, Key: key}}}), nil
}

func (s *localState) OpenIterable(_ context.Context, _ exec.StreamID, key []byte) (io.ReadCloser, error) {
	return s.reader(&fnpb.StateKey{Type: &fnpb.StateKey_Runner_{Runner: &fnpb.StateKey_Runner{Key: key}}}), nil
}

func (s *localState) OpenBagUserStateReader(_ context.Context, id exec.StreamID, userStateID string, key, w []byte) (io.ReadCloser, error) {
	return &bagReader{bagOp: s.bag(id, userStateID, key, w)}, nil
}

func (s *localState) OpenBagUserStateAppender(_ context.Context, id exec.StreamID, userStateID string, key, w []byte) (io.Writer, error) {
	return &bagWriter{bagOp: s.bag(id, userStateID, key, w)}, nil
}

func (s *localState) OpenBagUserStateClearer(_ context.Context, id exec.StreamID, userStateID string, key, w []byte) (io.Writer, error) {
	return &bagWriter{bagOp: s.bag(id, userStateID, key, w), clear: true}, nil
}

// bag returns the direct-call operations of a bag state cell.
func (s *localState) bag(id exec.StreamID, userStateID string, key, w []byte) bagOp {
	return bagOp{s: s, cell: harness.Cell{Transform: id.PtransformID, StateID: userStateID, Window: w, Key: key}}
}

// bagOp is one bag state cell of an in-process bundle.
type bagOp struct {
	s    *localState
	cell harness.Cell
}

// do runs op unless the bundle has ended, naming the cell in its error.
// A write drops the StateServer's paged read.
func (b *bagOp) do(write bool, op func(st harness.State) error) error {
	return b.s.do(func() error {
		if write {
			b.s.paged = nil
		}
		if err := op(b.s.st); err != nil {
			return fmt.Errorf("state %s of %s on bundle %q: %w", b.cell.StateID, b.cell.Transform, b.s.inst, err)
		}
		return nil
	})
}

// bagReader reads a whole bag on its first Read.
type bagReader struct {
	bagOp
	buf  []byte
	read bool
}

func (r *bagReader) Read(p []byte) (int, error) {
	if !r.read {
		err := r.do(false, func(st harness.State) (err error) {
			r.buf, err = st.ReadBag(r.cell)
			return err
		})
		if err != nil {
			return 0, err
		}
		r.read = true
	}
	if len(r.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *bagReader) Close() error { return nil }

// bagWriter appends each Write to the bag, or clears it on each Write.
type bagWriter struct {
	bagOp
	clear bool
}

func (w *bagWriter) Write(p []byte) (int, error) {
	err := w.do(true, func(st harness.State) error {
		if w.clear {
			return st.ClearBag(w.cell)
		}
		return st.AppendBag(w.cell, bytes.Clone(p))
	})
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *localState) OpenMultimapUserStateReader(_ context.Context, id exec.StreamID, userStateID string, key, w, mk []byte) (io.ReadCloser, error) {
	return s.reader(multimapKey(id, userStateID, key, w, mk)), nil
}

func (s *localState) OpenMultimapUserStateAppender(_ context.Context, id exec.StreamID, userStateID string, key, w, mk []byte) (io.Writer, error) {
	return s.writer(multimapKey(id, userStateID, key, w, mk), false), nil
}

func (s *localState) OpenMultimapUserStateClearer(_ context.Context, id exec.StreamID, userStateID string, key, w, mk []byte) (io.Writer, error) {
	return s.writer(multimapKey(id, userStateID, key, w, mk), true), nil
}

func (s *localState) OpenMultimapKeysUserStateReader(_ context.Context, id exec.StreamID, userStateID string, key, w []byte) (io.ReadCloser, error) {
	return s.reader(multimapKeysKey(id, userStateID, key, w)), nil
}

func (s *localState) OpenMultimapKeysUserStateClearer(_ context.Context, id exec.StreamID, userStateID string, key, w []byte) (io.Writer, error) {
	return s.writer(multimapKeysKey(id, userStateID, key, w), true), nil
}

func (s *localState) OpenOrderedListUserStateReader(_ context.Context, id exec.StreamID, userStateID string, key, w []byte, start, end int64) (io.ReadCloser, error) {
	return s.reader(orderedListKey(id, userStateID, key, w, &fnpb.OrderedListRange{Start: start, End: end})), nil
}

func (s *localState) OpenOrderedListUserStateAppender(_ context.Context, id exec.StreamID, userStateID string, key, w []byte) (io.Writer, error) {
	return s.writer(orderedListKey(id, userStateID, key, w, nil), false), nil
}

func (s *localState) OpenOrderedListUserStateClearer(_ context.Context, id exec.StreamID, userStateID string, key, w []byte, start, end int64) (io.Writer, error) {
	return s.writer(orderedListKey(id, userStateID, key, w, &fnpb.OrderedListRange{Start: start, End: end}), true), nil
}

// GetSideInputCache returns a cache that keeps nothing: weir sends no
// cache tokens, so the SDK harness would not cache side inputs either.
func (s *localState) GetSideInputCache() exec.SideCache { return noSideCache{} }

type noSideCache struct{}

func (noSideCache) QueryCache(context.Context, string, string, []byte, []byte) exec.ReStream {
	return nil
}

func (noSideCache) SetCache(_ context.Context, _, _ string, _, _ []byte, input exec.ReStream) exec.ReStream {
	return input
}

// monitoringInfos reports a finished bundle's metrics as the SDK harness
// reports them: user metrics from the bundle's store, each PCollection's
// element count, and the data source's read index.
func monitoringInfos(p *exec.Plan, store *metrics.Store) []*pipepb.MonitoringInfo {
	var out []*pipepb.MonitoringInfo
	add := func(urn metricsx.Urn, labels map[string]string, payload []byte, err error) {
		if err == nil {
			out = append(out, &pipepb.MonitoringInfo{Urn: metricsx.UrnToString(urn), Type: metricsx.UrnToType(urn), Labels: labels, Payload: payload})
		}
	}
	if store != nil {
		metrics.Extractor{
			SumInt64: func(l metrics.Labels, v int64) {
				b, err := metricsx.Int64Counter(v)
				add(metricsx.UrnUserSumInt64, l.Map(), b, err)
			},
			DistributionInt64: func(l metrics.Labels, count, sum, lo, hi int64) {
				b, err := metricsx.Int64Distribution(count, sum, lo, hi)
				add(metricsx.UrnUserDistInt64, l.Map(), b, err)
			},
			GaugeInt64: func(l metrics.Labels, v int64, t time.Time) {
				b, err := metricsx.Int64Latest(t, v)
				add(metricsx.UrnUserLatestMsInt64, l.Map(), b, err)
			},
		}.ExtractFrom(store)
	}
	snap, ok := p.Progress()
	if !ok {
		return out
	}
	for _, pc := range snap.PCols {
		b, err := metricsx.Int64Counter(pc.ElementCount)
		add(metricsx.UrnElementCount, map[string]string{"PCOLLECTION": pc.ID}, b, err)
	}
	b, err := metricsx.Int64Counter(snap.Source.Count)
	add(metricsx.UrnDataChannelReadIndex, map[string]string{"PTRANSFORM": snap.Source.ID}, b, err)
	return out
}
