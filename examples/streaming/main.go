// Command streaming is a streaming pipeline that runs until it is drained:
// a stream of synthetic card transactions, running balances per account with
// overdraft alerts, and transaction counts per fixed window.
//
// The source is an unbounded splittable DoFn (generateFn): it emits each
// transaction when the wall clock reaches its event time, returns
// sdf.ResumeProcessingIn to be called again, and reports a watermark (the
// event time of the next transaction) through a ManualWatermarkEstimator.
// From it:
//
//   - balances: keyed by account, a stateful DoFn buffers transactions in
//     ordered-list state and, when an event-time timer at the end of each
//     period (--window) fires, applies them in event-time order to the
//     account's balance in ValueState. It prints an ALERT for every
//     transaction that takes a balance below zero and one summary line per
//     account and period;
//   - windows: fixed windows of --window, transactions per merchant
//     (stats.Count) and the net amount (stats.Sum), one line per window,
//     printed once the watermark passes the window's end.
//
// Embedded (weir runs inside this process; Ctrl-C drains the job: the
// source stops, every timer fires, the last periods are printed and the
// job ends DONE; a second Ctrl-C exits at once):
//
//	go run ./examples/streaming
//	go run ./examples/streaming --rate=200 --accounts=20 --window=5s
//
// On a weir server, with the SDK harness in this process (LOOPBACK):
//
//	bin/weir serve --job_port=8099 &
//	go run ./examples/streaming --runner=universal --endpoint=127.0.0.1:8099 --environment_type=LOOPBACK
//	bin/weir jobs                  # find the job: NAME streaming-...
//	bin/weir drain JOB             # or Ctrl-C here, which drains it too
//
// --duration=D makes the stream end by itself after D of transactions
// (the job then finishes as a batch job would). The output goes to stdout.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners" // --runner
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	weir "github.com/weir-runner/weir/runner" // --runner=weir
)

var (
	rate     = flag.Float64("rate", 20, "transactions per second")
	accounts = flag.Int("accounts", 8, "number of accounts")
	win      = flag.Duration("window", 10*time.Second, "fixed window for counts, and the period of balance summaries")
	duration = flag.Duration("duration", 0, "stop after this much event time (0: run until drained)")
	opening  = flag.Int64("opening", 5000, "opening balance of every account, in cents")
	tick     = flag.Duration("tick", 250*time.Millisecond, "least time between source resumptions")
	shards   = flag.Int("shards", runtime.NumCPU(), "source shards; keep it at least the runner's --parallelism so every source subtask has one (weir: a source subtask without one holds the watermark back)")
)

func main() {
	flag.Parse()
	if *runners.Runner == "" || *runners.Runner == "direct" && !flagSet("runner") {
		*runners.Runner = "weir"
	}
	beam.Init()
	if *rate <= 0 || *accounts <= 0 || *win < time.Millisecond {
		log.Fatal("--rate and --accounts must be positive and --window at least 1ms")
	}

	// Find out now where the job will run and what it will be called, so
	// Ctrl-C can drain it through the Job API.
	if *jobopts.JobName == "" {
		*jobopts.JobName = fmt.Sprintf("streaming-%d", time.Now().Unix())
	}
	if *runners.Runner == "weir" && *jobopts.Endpoint == "" {
		// What --runner=weir does by itself, done here to know the endpoint.
		srv, err := weir.Start(weir.Config{})
		if err != nil {
			log.Fatalf("starting embedded weir: %v", err)
		}
		defer srv.Stop()
		*jobopts.Endpoint = srv.Endpoint()
		if *jobopts.EnvironmentType == "" {
			*jobopts.EnvironmentType = "loopback"
		}
	}
	if *jobopts.Endpoint != "" {
		go drainOnInterrupt(*jobopts.Endpoint, *jobopts.JobName)
	}

	interval := int64(1e6 / *rate)
	o := Options{
		Spec: GenSpec{
			StartMillis:    time.Now().UnixMilli(),
			IntervalMicros: max(interval, 1),
			Accounts:       *accounts,
			Events:         duration.Microseconds() / max(interval, 1),
			Shards:         max(*shards, 1),
		},
		Paced:   true,
		Tick:    *tick,
		Window:  *win,
		Opening: *opening,
	}
	if *duration > 0 && o.Spec.Events == 0 {
		o.Spec.Events = 1
	}
	p, s := beam.NewPipelineWithRoot()
	out := Build(s, o)
	for _, lines := range []beam.PCollection{out.Windows, out.Alerts, out.Summaries} {
		beam.ParDo0(s.Scope("Print"), printFn, lines)
	}
	fmt.Fprintf(os.Stderr, "streaming: job %s, %.0f txns/s over %d accounts, %s windows; Ctrl-C or `weir drain` to stop\n",
		*jobopts.JobName, *rate, *accounts, *win)
	if err := beamx.Run(context.Background(), p); err != nil {
		log.Fatalf("streaming failed: %v", err)
	}
	fmt.Fprintln(os.Stderr, "streaming: done")
}

// drainOnInterrupt drains the job named name at endpoint on the first
// SIGINT or SIGTERM, and exits on the second.
func drainOnInterrupt(endpoint, name string) {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	fmt.Fprintln(os.Stderr, "streaming: draining (interrupt again to exit at once)")
	go func() {
		<-sig
		os.Exit(130)
	}()
	if err := drain(endpoint, name); err != nil {
		fmt.Fprintf(os.Stderr, "streaming: %v; exiting\n", err)
		os.Exit(1)
	}
}

func drain(endpoint, name string) error {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	c := jobpb.NewJobServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	jobs, err := c.GetJobs(ctx, &jobpb.GetJobsRequest{})
	if err != nil {
		return fmt.Errorf("listing jobs: %w", err)
	}
	for _, j := range jobs.GetJobInfo() {
		if j.GetJobName() == name && j.GetState() == jobpb.JobState_RUNNING {
			if _, err := c.Drain(ctx, &jobpb.DrainJobRequest{JobId: j.GetJobId()}); err != nil {
				return fmt.Errorf("draining %s: %w", j.GetJobId(), err)
			}
			return nil
		}
	}
	return fmt.Errorf("no running job named %s", name)
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
