package runner_test

import (
	"context"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/metrics"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
)

var (
	seen  = beam.NewCounter("weirtest", "seen")
	sizes = beam.NewDistribution("weirtest", "sizes")
	last  = beam.NewGauge("weirtest", "last")
)

func countFn(ctx context.Context, x int) {
	seen.Inc(ctx, 1)
	sizes.Update(ctx, int64(x))
	last.Set(ctx, 7)
}

func init() { register.Function2x0(countFn) }

// TestUserMetrics checks that counters, distributions and gauges reported
// by bundles on several subtasks come back summed through GetJobMetrics
// and PipelineResult.Metrics().
func TestUserMetrics(t *testing.T) {
	srv := startWeir(t, 2)
	p, s := beam.NewPipelineWithRoot()
	var in []int
	for i := 1; i <= 1000; i++ {
		in = append(in, i)
	}
	beam.ParDo0(s, countFn, beam.Reshuffle(s, beam.CreateList(s, in)))

	saved := []*string{jobopts.Endpoint, jobopts.EnvironmentType}
	old := []string{*saved[0], *saved[1]}
	defer func() { *saved[0], *saved[1] = old[0], old[1] }()
	*jobopts.Endpoint, *jobopts.EnvironmentType = srv.Endpoint(), "loopback"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := beam.Run(ctx, "weir", p)
	if err != nil {
		t.Fatalf("job failed: %v", err)
	}
	if res == nil {
		t.Fatal("no PipelineResult")
	}
	q := res.Metrics().Query(func(r metrics.SingleResult) bool { return r.Namespace() == "weirtest" })
	if len(q.Counters()) != 1 || q.Counters()[0].Result() != 1000 {
		t.Errorf("counter: got %+v, want one counter of 1000", q.Counters())
	}
	if len(q.Distributions()) != 1 {
		t.Fatalf("distributions: got %+v, want one", q.Distributions())
	}
	if d := q.Distributions()[0].Result(); d.Count != 1000 || d.Sum != 500500 || d.Min != 1 || d.Max != 1000 {
		t.Errorf("distribution: got %+v, want count 1000 sum 500500 min 1 max 1000", d)
	}
	if len(q.Gauges()) != 1 || q.Gauges()[0].Result().Value != 7 {
		t.Errorf("gauge: got %+v, want one gauge of 7", q.Gauges())
	}
}
