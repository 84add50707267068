package engine

import (
	"bytes"
	"sort"
	"sync"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/coder"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
)

// metrics aggregates the user metrics that bundles report.
type metrics struct {
	mu     sync.Mutex
	cells  map[string]*cell
	notify func([]*pipepb.MonitoringInfo)
}

type cell struct {
	info *pipepb.MonitoringInfo
	vals [4]int64 // sum | count,sum,min,max | timestamp,value
}

const (
	typeSum  = "beam:metrics:sum_int64:v1"
	typeDist = "beam:metrics:distribution_int64:v1"
	typeLast = "beam:metrics:latest_int64:v1"
)

func newMetrics(notify func([]*pipepb.MonitoringInfo)) *metrics {
	return &metrics{cells: map[string]*cell{}, notify: notify}
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

// add merges the user metrics of one successful bundle.
func (m *metrics) add(infos []*pipepb.MonitoringInfo) {
	m.mu.Lock()
	changed := false
	for _, mi := range infos {
		var n int
		switch mi.GetType() {
		case typeSum:
			n = 1
		case typeDist:
			n = 4
		case typeLast:
			n = 2
		default:
			continue
		}
		if _, ok := mi.GetLabels()["PTRANSFORM"]; !ok || mi.GetLabels()["NAME"] == "" {
			continue // only user metrics are kept
		}
		v, ok := decodeInts(mi.GetPayload(), n)
		if !ok {
			continue
		}
		k := metricKey(mi)
		c := m.cells[k]
		if c == nil {
			c = &cell{info: &pipepb.MonitoringInfo{Urn: mi.GetUrn(), Type: mi.GetType(), Labels: mi.GetLabels()}}
			copy(c.vals[:], v)
			m.cells[k] = c
			changed = true
			continue
		}
		changed = true
		switch mi.GetType() {
		case typeSum:
			c.vals[0] += v[0]
		case typeDist:
			c.vals[0] += v[0]
			c.vals[1] += v[1]
			c.vals[2] = min(c.vals[2], v[2])
			c.vals[3] = max(c.vals[3], v[3])
		case typeLast:
			if v[0] >= c.vals[0] {
				c.vals[0], c.vals[1] = v[0], v[1]
			}
		}
	}
	var snap []*pipepb.MonitoringInfo
	if changed && m.notify != nil {
		snap = m.snapshotLocked()
	}
	m.mu.Unlock()
	if snap != nil {
		m.notify(snap)
	}
}

func (m *metrics) snapshotLocked() []*pipepb.MonitoringInfo {
	out := make([]*pipepb.MonitoringInfo, 0, len(m.cells))
	for _, c := range m.cells {
		var n int
		switch c.info.GetType() {
		case typeSum:
			n = 1
		case typeDist:
			n = 4
		case typeLast:
			n = 2
		}
		var buf bytes.Buffer
		for i := 0; i < n; i++ {
			_ = coder.EncodeVarInt(c.vals[i], &buf)
		}
		out = append(out, &pipepb.MonitoringInfo{Urn: c.info.GetUrn(), Type: c.info.GetType(), Labels: c.info.GetLabels(), Payload: buf.Bytes()})
	}
	return out
}
