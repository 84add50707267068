package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/weir-runner/weir/portability"
	"github.com/weir-runner/weir/savepoint/inspect"
)

const savepointUsage = `usage:
  weir savepoint [take] [--endpoint=HOST:PORT] [--target=URL] [--type=canonical|native] JOB
                                 take a savepoint of the running JOB into URL (default: the job's
                                 --savepoint_dir) and print its path; the job goes on
                                 (weir stop JOB stops it with one). native: the subtasks' Pebble
                                 files, restored about as fast as a checkpoint but only into the
                                 same pipeline, at its parallelism or a multiple
  weir savepoint list DIR        committed savepoints in DIR, newest first; incomplete ones apart
  weir savepoint inspect [--transform=NAME] [--state=ID] [--limit=N] PATH
                                 verify the savepoint at PATH, then print it as JSON lines
  weir savepoint dispose PATH    delete the savepoint at PATH (_metadata first)
  weir savepoint rewrite [--max_parallelism=N] [--rename=OLD=NEW]... [--drop=NAME[/ID]]... [--id=ID] PATH DIR
                                 write a new savepoint into DIR from PATH (only read): N key groups, renames, drops
DIR and PATH are file:///abs/dir, gs://bucket/prefix or an absolute path.`

// savepointCmd is `weir savepoint`: take a savepoint of a running job (the
// job server's weir.v1.Savepoints service), and list, inspect and dispose
// savepoints (see package savepoint/inspect).
func savepointCmd(args []string) error {
	if len(args) == 0 {
		return errors.New(savepointUsage)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	switch args[0] {
	case "take":
		return savepointTake(ctx, os.Stdout, args[1:])
	case "list":
		return savepointList(ctx, os.Stdout, os.Stderr, args[1:])
	case "inspect":
		return savepointInspect(ctx, os.Stdout, args[1:])
	case "dispose":
		return savepointDispose(ctx, os.Stdout, args[1:])
	case "rewrite":
		return savepointRewrite(ctx, os.Stdout, args[1:])
	case "help", "-h", "--help":
		fmt.Println(savepointUsage)
		return nil
	}
	// weir savepoint JOB: take.
	return savepointTake(ctx, os.Stdout, args)
}

// oneArg parses a subcommand's flags and its one positional argument.
func oneArg(fs *flag.FlagSet, args []string, what string) (string, error) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return "", fmt.Errorf("%w\n%s", err, savepointUsage)
	}
	if fs.NArg() != 1 {
		return "", fmt.Errorf("want one %s\n%s", what, savepointUsage)
	}
	return fs.Arg(0), nil
}

// typeUsage is the help of the --type flag of take and stop.
const typeUsage = "canonical (records: restores into a changed pipeline at any parallelism, inspectable) or native (the Pebble files: restores about as fast as a checkpoint, into the same pipeline at its parallelism or a multiple)"

func savepointTake(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("savepoint take", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	target := fs.String("target", "", "where the savepoint goes: file:///abs/dir or gs://bucket/prefix (default: the job's --savepoint_dir)")
	typ := fs.String("type", "canonical", typeUsage)
	ep := fs.String("endpoint", "127.0.0.1:8099", "weir server address")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, savepointUsage)
	}
	if len(pos) != 1 {
		return fmt.Errorf("want one JOB\n%s", savepointUsage)
	}
	conn, err := connect(*ep)
	if err != nil {
		return err
	}
	defer conn.Close()
	path, err := portability.TakeSavepointWith(ctx, conn, pos[0], portability.SavepointRequest{Target: *target, Type: *typ})
	if err != nil {
		return fmt.Errorf("taking a savepoint of %s: %w", pos[0], err)
	}
	_, err = fmt.Fprintln(w, path)
	return err
}

func savepointList(ctx context.Context, w, errw io.Writer, args []string) error {
	dir, err := oneArg(flag.NewFlagSet("savepoint list", flag.ContinueOnError), args, "DIR")
	if err != nil {
		return err
	}
	st, err := inspect.OpenStore(ctx, dir)
	if err != nil {
		return err
	}
	defer st.Close()
	l, err := inspect.List(ctx, st)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tID\tCREATED\tMAX PARALLELISM\tPARALLELISM\tTYPE\tSIZE\tTRANSFORMS\tPATH")
	for _, s := range l.Savepoints {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%d\t%s\n", s.Job, s.ID, s.Created.UTC().Format(time.RFC3339), s.MaxParallelism,
			s.Parallelism, s.Type, bytesString(s.Size), len(s.Transforms), s.URL)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(l.Incomplete) > 0 {
		fmt.Fprintln(w, "\nincomplete (no _metadata: not savepoints):")
		for _, in := range l.Incomplete {
			fmt.Fprintf(w, "  %s  %d files\n", in.URL, in.Files)
		}
	}
	for _, e := range l.Unreadable {
		fmt.Fprintf(errw, "unreadable: %v\n", e)
	}
	return nil
}

func savepointInspect(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("savepoint inspect", flag.ContinueOnError)
	var f inspect.Filter
	fs.StringVar(&f.Transform, "transform", "", "only the records of the transform (stateful ParDo, GroupByKey, side input reader, source) of this unique name")
	fs.StringVar(&f.State, "state", "", "only the records of this state ID, timer family or side input")
	limit := fs.Int("limit", 0, "print at most this many records (0: all)")
	path, err := oneArg(fs, args, "PATH")
	if err != nil {
		return err
	}
	r, err := inspect.OpenURL(ctx, path)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.Verify(ctx); err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(inspect.Summarize(r.URL(), r.Metadata())); err != nil {
		return err
	}
	n := 0
	for e, err := range r.Entries(ctx, f) {
		if err != nil {
			return err
		}
		if *limit > 0 && n == *limit {
			break
		}
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("printing a record of %s: %w", e.Owner(), err)
		}
		n++
	}
	return nil
}

func savepointDispose(ctx context.Context, w io.Writer, args []string) error {
	path, err := oneArg(flag.NewFlagSet("savepoint dispose", flag.ContinueOnError), args, "PATH")
	if err != nil {
		return err
	}
	st, dir, err := inspect.OpenDir(ctx, path)
	if err != nil {
		return err
	}
	defer st.Close()
	n, left, err := inspect.Dispose(ctx, st, dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "disposed %s: %d files deleted\n", inspect.DirURL(st, dir), n)
	for _, name := range left {
		fmt.Fprintf(w, "left (not the savepoint's): %s/%s\n", st, name)
	}
	return nil
}
