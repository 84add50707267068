package engine

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/metricsx"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
)

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
	m := newMetrics(func(s []*pipepb.MonitoringInfo) { snaps = append(snaps, s) })

	// Bundle 1.
	m.add([]*pipepb.MonitoringInfo{
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
	m.add([]*pipepb.MonitoringInfo{
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
	m.add([]*pipepb.MonitoringInfo{
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
	m.add([]*pipepb.MonitoringInfo{gaugeMI(t, "pardo", "last", 200, 8)})
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
	m := newMetrics(func([]*pipepb.MonitoringInfo) { calls++ })
	p, _ := metricsx.Int64Counter(5)
	d, _ := metricsx.Int64Distribution(1, 2, 2, 2)
	m.add([]*pipepb.MonitoringInfo{
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
	m.add(nil)
	if calls != 0 || len(m.cells) != 0 {
		t.Errorf("non-user metrics kept %d cells and notified %d times", len(m.cells), calls)
	}
	m.add([]*pipepb.MonitoringInfo{counterMI(t, "pardo", "c", 1)})
	if calls != 1 || len(m.cells) != 1 {
		t.Errorf("one user metric: %d cells, %d notifications", len(m.cells), calls)
	}
}

func TestMetricsLabelsIdentifyCells(t *testing.T) {
	var last []*pipepb.MonitoringInfo
	m := newMetrics(func(s []*pipepb.MonitoringInfo) { last = s })
	a := counterMI(t, "pardo", "c", 1)
	b := counterMI(t, "pardo", "c", 2)
	b.Labels = userLabels("pardo", "other-ns", "c")
	m.add([]*pipepb.MonitoringInfo{a, b, counterMI(t, "pardo", "c", 10)})
	checkResults(t, last, "counter pardo ns/c = 11", "counter pardo other-ns/c = 2")
}

func TestMetricsConcurrentBundles(t *testing.T) {
	var mu sync.Mutex
	var last []*pipepb.MonitoringInfo
	m := newMetrics(func(s []*pipepb.MonitoringInfo) { mu.Lock(); last = s; mu.Unlock() })
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				m.add([]*pipepb.MonitoringInfo{
					counterMI(t, "pardo", "n", 1),
					distMI(t, "pardo", "d", 1, int64(i), int64(i), int64(i)),
					gaugeMI(t, "pardo", "g", int64(g*1000+i), int64(g)),
				})
			}
		}()
	}
	wg.Wait()
	m.mu.Lock()
	snap := m.snapshotLocked()
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
