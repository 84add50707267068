package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func dial(fs *flag.FlagSet, args []string) (jobpb.JobServiceClient, func(), error) {
	conn, err := dialConn(fs, args)
	if err != nil {
		return nil, nil, err
	}
	return jobpb.NewJobServiceClient(conn), func() { conn.Close() }, nil
}

// dialConn defines --endpoint on fs, parses args and connects to the weir
// server there.
func dialConn(fs *flag.FlagSet, args []string) (*grpc.ClientConn, error) {
	ep := fs.String("endpoint", "127.0.0.1:8099", "weir server address")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return connect(*ep)
}

// connect makes a client connection to the weir server at ep.
func connect(ep string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", ep, err)
	}
	return conn, nil
}

func jobs(args []string) error {
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	c, closeFn, err := dial(fs, args)
	if err != nil {
		return err
	}
	defer closeFn()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.GetJobs(ctx, &jobpb.GetJobsRequest{})
	if err != nil {
		return fmt.Errorf("listing jobs: %w", err)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tNAME\tSTATE")
	for _, j := range resp.GetJobInfo() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", j.GetJobId(), j.GetJobName(), j.GetState())
	}
	return tw.Flush()
}

func cancel(args []string) error {
	fs := flag.NewFlagSet("cancel", flag.ContinueOnError)
	c, closeFn, err := dial(fs, args)
	if err != nil {
		return err
	}
	defer closeFn()
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: weir cancel [--endpoint=HOST:PORT] JOB")
	}
	ctx, cancelCtx := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelCtx()
	resp, err := c.Cancel(ctx, &jobpb.CancelJobRequest{JobId: fs.Arg(0)})
	if err != nil {
		return fmt.Errorf("cancelling %s: %w", fs.Arg(0), err)
	}
	fmt.Printf("%s: %s\n", fs.Arg(0), resp.GetState())
	return nil
}

func drain(args []string) error {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	c, closeFn, err := dial(fs, args)
	if err != nil {
		return err
	}
	defer closeFn()
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: weir drain [--endpoint=HOST:PORT] JOB")
	}
	ctx, cancelCtx := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelCtx()
	resp, err := c.Drain(ctx, &jobpb.DrainJobRequest{JobId: fs.Arg(0)})
	if err != nil {
		return fmt.Errorf("draining %s: %w", fs.Arg(0), err)
	}
	fmt.Printf("%s: %s\n", fs.Arg(0), resp.GetState())
	return nil
}
