package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/checkpoint/storage"
)

// checkpoints lists the completed checkpoints of a job, read from its
// checkpoint dir (so it works whether or not the job is running).
func checkpoints(args []string) error {
	fs := flag.NewFlagSet("checkpoints", flag.ContinueOnError)
	dir := fs.String("checkpoint_dir", os.Getenv("WEIR_CHECKPOINT_DIR"), "the job's checkpoint dir: file:///abs/dir or gs://bucket/prefix (default $WEIR_CHECKPOINT_DIR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *dir == "" {
		return errors.New("usage: weir checkpoints --checkpoint_dir=URL JOB_NAME")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := storage.Open(ctx, *dir)
	if err != nil {
		return err
	}
	defer st.Close()
	metas, bad, err := checkpoint.List(ctx, st, fs.Arg(0))
	if err != nil {
		return err
	}
	if err := printCheckpoints(os.Stdout, metas); err != nil {
		return err
	}
	for _, e := range bad {
		fmt.Fprintf(os.Stderr, "unreadable: %v\n", e)
	}
	return nil
}

func printCheckpoints(w io.Writer, metas []*checkpoint.Metadata) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tDURATION\tALIGNMENT\tUPLOADED\tFULL SIZE\tSUBTASKS")
	for _, m := range metas {
		dur, align, up := "-", "-", "-"
		if s := m.Stats; s != nil {
			dur = (time.Duration(s.DurationMS) * time.Millisecond).String()
			align = (time.Duration(s.AlignmentMS) * time.Millisecond).String()
			up = bytesString(s.UploadedBytes)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\n", m.CheckpointID, m.Created.Local().Format(time.DateTime), dur, align, up, bytesString(m.FullSize()), len(m.Subtasks))
	}
	return tw.Flush()
}

func bytesString(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
