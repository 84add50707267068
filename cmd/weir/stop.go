package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/weir-runner/weir/portability"
)

const stopUsage = `usage: weir stop [--endpoint=HOST:PORT] [--savepoint] [--target=URL] [--type=canonical|native] [--drain] JOB
  stop the running JOB with a savepoint into URL (default: the job's --savepoint_dir) and print
  its path: its sources stop at a position, the savepoint is taken, the job ends DONE; start it
  again (changed, at another parallelism) with --savepoint_path. With --drain the job first
  drains: the watermark reaches the end and every timer fires. --type as for weir savepoint take.
  Flags may follow JOB.`

// stopCmd is `weir stop`: stop a running job with a savepoint (the job
// server's weir.v1.Savepoints/Stop), Flink's stop-with-savepoint.
func stopCmd(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("stop", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	target := fs.String("target", "", "where the savepoint goes: file:///abs/dir or gs://bucket/prefix (default: the job's --savepoint_dir)")
	drain := fs.Bool("drain", false, "drain first: the watermark reaches the end and every timer fires before the savepoint")
	typ := fs.String("type", "canonical", typeUsage)
	fs.Bool("savepoint", true, "stop with a savepoint (always: weir cancel stops without one)")
	ep := fs.String("endpoint", "127.0.0.1:8099", "weir server address")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, stopUsage)
	}
	if len(pos) != 1 {
		return fmt.Errorf("want one JOB\n%s", stopUsage)
	}
	conn, err := connect(*ep)
	if err != nil {
		return err
	}
	defer conn.Close()
	path, err := portability.StopWithSavepointWith(ctx, conn, pos[0], portability.SavepointRequest{Target: *target, Type: *typ, Drain: *drain})
	if err != nil {
		return fmt.Errorf("stopping %s with a savepoint: %w", pos[0], err)
	}
	_, err = fmt.Fprintln(w, path)
	return err
}

// parseInterspersed parses args with fs, flags before and after the
// positional arguments (`weir stop JOB --drain`), and returns the latter.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
