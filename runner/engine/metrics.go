package engine

import (
	"bytes"
	"sort"
	"sync"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/coder"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/checkpoint"
)

// metrics aggregates the user metrics that bundles report, twice:
//
//   - attempted counts every successful bundle attempt, including bundles
//     replayed after a restore. A run restored in process keeps counting;
//     a job resumed from a checkpoint in a new process starts from the
//     attempted values the checkpoint recorded when it was committed.
//   - committed counts only bundles whose effects are final: in a completed
//     checkpoint, or in the job that finished. A restored run starts from
//     the checkpoint's committed values, so a replayed bundle counts once.
//
// Without checkpoints a successful bundle is committed at once (its output
// is released and never replayed). With them, the metric deltas of each
// subtask's bundles wait in open until the subtask's snapshot for
// checkpoint N hands them to N (as it hands N its bundles to finalize), or
// until the subtask finishes, when they go to the first checkpoint that
// records it finished. A delta handed to N is committed when any
// checkpoint from N on commits: a checkpoint after an aborted N holds the
// effects of the same bundles. When the job ends, everything left is
// committed.
type metrics struct {
	mu        sync.Mutex
	attempted *agg
	committed *agg
	// checkpointed: the run checkpoints, so deltas wait in open and handed.
	checkpointed bool
	open         map[checkpoint.SubtaskID]*agg
	handed       []handedDelta
	seeded       bool                     // attempted has been seeded (first run)
	committedMI  []*pipepb.MonitoringInfo // committed, encoded; nil when stale

	notify func(attempted, committed []*pipepb.MonitoringInfo)
	// seq numbers the snapshots; sendMu and sent keep a snapshot from being
	// delivered after a newer one.
	seq    uint64
	sendMu sync.Mutex
	sent   uint64
}

// handedDelta is a delta that any checkpoint from chk on holds.
type handedDelta struct {
	chk int64
	d   *agg
}

func newMetrics(notify func(attempted, committed []*pipepb.MonitoringInfo)) *metrics {
	return &metrics{attempted: newAgg(), committed: newAgg(), open: map[checkpoint.SubtaskID]*agg{}, notify: notify}
}

// add merges the user metrics of one successful bundle of subtask id.
func (m *metrics) add(id checkpoint.SubtaskID, infos []*pipepb.MonitoringInfo) {
	d := newAgg()
	if !d.addInfos(infos) {
		return
	}
	m.mu.Lock()
	m.attempted.merge(d)
	if m.checkpointed {
		if o := m.open[id]; o != nil {
			o.merge(d)
		} else {
			m.open[id] = d
		}
	} else {
		m.commitLocked(d)
	}
	send := m.publishLocked()
	m.mu.Unlock()
	send()
}

// rewind starts a run from checkpoint restore (nil: from the start):
// committed becomes the checkpoint's, deltas of the last run are dropped
// (its bundles run again), and, in the first run only, attempted starts
// from the checkpoint's. checkpointed says whether the run checkpoints.
func (m *metrics) rewind(restore *checkpoint.Metadata, checkpointed bool) {
	var saved checkpoint.Metrics
	if restore != nil && restore.Metrics != nil {
		saved = *restore.Metrics
	}
	m.mu.Lock()
	changed := !m.committed.empty()
	m.checkpointed = checkpointed
	m.open = map[checkpoint.SubtaskID]*agg{}
	m.handed = nil
	m.committed = aggFromCheckpoint(saved.Committed)
	m.committedMI = nil
	changed = changed || !m.committed.empty()
	if !m.seeded {
		m.seeded = true
		if a := aggFromCheckpoint(saved.Attempted); !a.empty() {
			m.attempted, changed = a, true
		}
	}
	send := func() {}
	if changed {
		send = m.publishLocked()
	}
	m.mu.Unlock()
	send()
}

// handOver hands subtask id's open delta to checkpoint chk: the first
// checkpoint whose state holds the effects of its bundles.
func (m *metrics) handOver(id checkpoint.SubtaskID, chk int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := m.open[id]; d != nil {
		delete(m.open, id)
		m.handed = append(m.handed, handedDelta{chk: chk, d: d})
	}
}

// values are the metrics checkpoint chk records: attempted as it is, and
// committed with the deltas chk commits.
func (m *metrics) values(chk int64) *checkpoint.Metrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.committed.clone()
	for _, h := range m.handed {
		if h.chk <= chk {
			c.merge(h.d)
		}
	}
	if c.empty() && m.attempted.empty() {
		return nil
	}
	return &checkpoint.Metrics{Attempted: m.attempted.toCheckpoint(), Committed: c.toCheckpoint()}
}

// commitUpTo commits the deltas checkpoint chk holds, once it has
// committed.
func (m *metrics) commitUpTo(chk int64) {
	m.commit(func(h handedDelta) bool { return h.chk <= chk }, false)
}

// commitAll commits every delta left when the job has ended successfully.
func (m *metrics) commitAll() {
	m.commit(func(handedDelta) bool { return true }, true)
}

// commit commits the handed deltas ok accepts, and the open ones too if
// open is set.
func (m *metrics) commit(ok func(handedDelta) bool, open bool) {
	m.mu.Lock()
	changed := false
	if open {
		for id, d := range m.open {
			m.commitLocked(d)
			delete(m.open, id)
			changed = true
		}
	}
	kept := m.handed[:0]
	for _, h := range m.handed {
		if ok(h) {
			m.commitLocked(h.d)
			changed = true
		} else {
			kept = append(kept, h)
		}
	}
	clear(m.handed[len(kept):])
	m.handed = kept
	send := func() {}
	if changed {
		send = m.publishLocked()
	}
	m.mu.Unlock()
	send()
}

func (m *metrics) commitLocked(d *agg) {
	m.committed.merge(d)
	m.committedMI = nil
}

// publishLocked takes a snapshot of both aggregates and returns what
// delivers it (after m.mu is released), unless a newer one was delivered.
func (m *metrics) publishLocked() func() {
	if m.notify == nil {
		return func() {}
	}
	if m.committedMI == nil {
		m.committedMI = m.committed.infos()
	}
	m.seq++
	seq, a, c := m.seq, m.attempted.infos(), m.committedMI
	return func() {
		m.sendMu.Lock()
		defer m.sendMu.Unlock()
		if seq > m.sent {
			m.sent = seq
			m.notify(a, c)
		}
	}
}

// agg is one aggregate of user metrics: a cell per metric (URN and
// labels). attempted, committed and the deltas on their way are aggs.
type agg struct {
	cells map[string]*cell
}

type cell struct {
	info *pipepb.MonitoringInfo // URN, type and labels; no payload
	vals [4]int64               // sum | count,sum,min,max | timestamp,value
}

const (
	typeSum  = "beam:metrics:sum_int64:v1"
	typeDist = "beam:metrics:distribution_int64:v1"
	typeLast = "beam:metrics:latest_int64:v1"
)

// arity is how many integers a metric type encodes (0: not aggregated).
func arity(typ string) int {
	switch typ {
	case typeSum:
		return 1
	case typeDist:
		return 4
	case typeLast:
		return 2
	}
	return 0
}

func newAgg() *agg { return &agg{cells: map[string]*cell{}} }

func (a *agg) empty() bool { return a == nil || len(a.cells) == 0 }

// addInfos merges the user metrics among infos; it reports whether there
// were any.
func (a *agg) addInfos(infos []*pipepb.MonitoringInfo) bool {
	kept := false
	for _, mi := range infos {
		n := arity(mi.GetType())
		if n == 0 {
			continue
		}
		if _, ok := mi.GetLabels()["PTRANSFORM"]; !ok || mi.GetLabels()["NAME"] == "" {
			continue // only user metrics are kept
		}
		v, ok := decodeInts(mi.GetPayload(), n)
		if !ok {
			continue
		}
		a.mergeVals(metricKey(mi), mi, v)
		kept = true
	}
	return kept
}

// mergeVals merges the values v of the metric described by info (URN,
// type and labels) into its cell.
func (a *agg) mergeVals(key string, info *pipepb.MonitoringInfo, v []int64) {
	c := a.cells[key]
	if c == nil {
		c = &cell{info: &pipepb.MonitoringInfo{Urn: info.GetUrn(), Type: info.GetType(), Labels: info.GetLabels()}}
		copy(c.vals[:], v)
		a.cells[key] = c
		return
	}
	switch info.GetType() {
	case typeSum:
		c.vals[0] += v[0]
	case typeDist:
		c.vals[0] += v[0]
		c.vals[1] += v[1]
		c.vals[2] = min(c.vals[2], v[2])
		c.vals[3] = max(c.vals[3], v[3])
	case typeLast:
		if v[0] >= c.vals[0] { // an equal timestamp: the later report wins
			c.vals[0], c.vals[1] = v[0], v[1]
		}
	}
}

// merge merges b into a.
func (a *agg) merge(b *agg) {
	if b == nil {
		return
	}
	for k, c := range b.cells {
		a.mergeVals(k, c.info, c.vals[:arity(c.info.GetType())])
	}
}

func (a *agg) clone() *agg {
	out := newAgg()
	out.merge(a)
	return out
}

// infos encodes the aggregate as monitoring infos.
func (a *agg) infos() []*pipepb.MonitoringInfo {
	out := make([]*pipepb.MonitoringInfo, 0, len(a.cells))
	for _, c := range a.cells {
		var buf bytes.Buffer
		for _, v := range c.vals[:arity(c.info.GetType())] {
			_ = coder.EncodeVarInt(v, &buf)
		}
		out = append(out, &pipepb.MonitoringInfo{Urn: c.info.GetUrn(), Type: c.info.GetType(), Labels: c.info.GetLabels(), Payload: buf.Bytes()})
	}
	return out
}

// toCheckpoint is the aggregate as a checkpoint records it, in key order.
func (a *agg) toCheckpoint() []checkpoint.Metric {
	keys := make([]string, 0, len(a.cells))
	for k := range a.cells {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]checkpoint.Metric, 0, len(keys))
	for _, k := range keys {
		c := a.cells[k]
		out = append(out, checkpoint.Metric{URN: c.info.GetUrn(), Type: c.info.GetType(), Labels: c.info.GetLabels(),
			Values: append([]int64(nil), c.vals[:arity(c.info.GetType())]...)})
	}
	return out
}

// aggFromCheckpoint reads back what toCheckpoint recorded; metrics of a
// type it does not aggregate, or with the wrong number of values, are
// left out.
func aggFromCheckpoint(ms []checkpoint.Metric) *agg {
	a := newAgg()
	for _, m := range ms {
		if n := arity(m.Type); n == 0 || len(m.Values) != n {
			continue
		}
		info := &pipepb.MonitoringInfo{Urn: m.URN, Type: m.Type, Labels: m.Labels}
		a.mergeVals(metricKey(info), info, m.Values)
	}
	return a
}

func metricKey(mi *pipepb.MonitoringInfo) string {
	keys := make([]string, 0, len(mi.GetLabels()))
	for k := range mi.GetLabels() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString(mi.GetUrn())
	for _, k := range keys {
		b.WriteString("\x00" + k + "=" + mi.GetLabels()[k])
	}
	return b.String()
}

func decodeInts(p []byte, n int) ([]int64, bool) {
	r := bytes.NewReader(p)
	out := make([]int64, n)
	for i := range out {
		v, err := coder.DecodeVarInt(r)
		if err != nil {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

// elementCount is the SDK's count of elements read on a PCollection.
const (
	elementCount = "beam:metric:element_count:v1"
	readIndex    = "beam:metric:data_channel:read_index:v1"
)

// readIndexOf returns the SDK's data channel read index of a data source
// transform in a bundle's monitoring infos: at the end of a bundle, the
// number of input elements it processed. False if it was not reported.
func readIndexOf(infos []*pipepb.MonitoringInfo, transform string) (int64, bool) {
	for _, mi := range infos {
		if mi.GetUrn() == readIndex && mi.GetLabels()["PTRANSFORM"] == transform {
			if v, ok := decodeInts(mi.GetPayload(), 1); ok {
				return v[0], true
			}
		}
	}
	return 0, false
}

// elementsOf returns the SDK's element count for one PCollection in a
// bundle's monitoring infos.
func elementsOf(infos []*pipepb.MonitoringInfo, pcoll string) int64 {
	var n int64
	for _, mi := range infos {
		if mi.GetUrn() == elementCount && mi.GetLabels()["PCOLLECTION"] == pcoll {
			if v, ok := decodeInts(mi.GetPayload(), 1); ok {
				n += v[0]
			}
		}
	}
	return n
}
