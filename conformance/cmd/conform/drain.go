package main

import (
	"context"
	"log"
	"strings"
	"time"

	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// drainAfter lists tests whose pipelines never end by themselves: Beam's
// suite expects the runner's operator to drain them. Beam's Go client names
// a job "go-" + the lower-cased test name + "-" + a number; the driver
// drains a RUNNING job with that prefix once it has run this long, as
// `weir drain JOB` would.
var drainAfter = map[string]time.Duration{
	"go-testdrain-": 5 * time.Second,
}

// drainer polls the job server at ep and drains the jobs drainAfter names,
// until ctx ends.
func drainer(ctx context.Context, ep string) {
	conn, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Printf("drainer: connecting to %s: %v", ep, err)
		return
	}
	defer conn.Close()
	c := jobpb.NewJobServiceClient(conn)
	seen := map[string]time.Time{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		resp, err := c.GetJobs(ctx, &jobpb.GetJobsRequest{})
		if err != nil {
			continue // the server may be restarting
		}
		for _, j := range resp.GetJobInfo() {
			if j.GetState() != jobpb.JobState_RUNNING {
				continue
			}
			for prefix, after := range drainAfter {
				if !strings.HasPrefix(j.GetJobName(), prefix) {
					continue
				}
				first, ok := seen[j.GetJobId()]
				if !ok {
					seen[j.GetJobId()] = time.Now()
					continue
				}
				if time.Since(first) >= after {
					if _, err := c.Drain(ctx, &jobpb.DrainJobRequest{JobId: j.GetJobId()}); err != nil {
						log.Printf("drainer: draining %s: %v", j.GetJobId(), err)
					}
				}
			}
		}
	}
}
