package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/weir-runner/weir/savepoint/inspect"
	"github.com/weir-runner/weir/savepoint/rewrite"
)

// savepointRewrite is `weir savepoint rewrite`: write a new savepoint from
// the one at SRC, into DST_DIR, with another max parallelism, transforms
// renamed, or state dropped (package savepoint/rewrite). It prints the new
// savepoint's path; SRC is only read.
func savepointRewrite(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("savepoint rewrite", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o := rewrite.Options{Rename: map[string]string{}}
	fs.IntVar(&o.MaxParallelism, "max_parallelism", 0, "the new number of key groups (0: the savepoint's)")
	fs.Func("rename", "OLD=NEW: unique-name prefix OLD becomes NEW (repeatable)", func(s string) error {
		old, new, err := rewrite.ParseRename(s)
		if err != nil {
			return err
		}
		if prev, ok := o.Rename[old]; ok && prev != new {
			return fmt.Errorf("rename %q given twice: to %q and to %q", old, prev, new)
		}
		o.Rename[old] = new
		return nil
	})
	fs.Func("drop", "NAME or NAME/ID: remove the state of NAME (and what is under it), or one state or timer family (repeatable)", func(s string) error {
		o.Drop = append(o.Drop, s)
		return nil
	})
	fs.StringVar(&o.ID, "id", "", "the new savepoint's ID (default: the source's ID, _rw and a random suffix)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w\n%s", err, savepointUsage)
	}
	if o.MaxParallelism == 0 && len(o.Rename) == 0 && len(o.Drop) == 0 {
		return fmt.Errorf("nothing to rewrite: give --max_parallelism, --rename or --drop\n%s", savepointUsage)
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("want SRC and DST_DIR after the flags\n%s", savepointUsage)
	}
	src, dir, err := inspect.OpenDir(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := inspect.OpenStore(ctx, fs.Arg(1))
	if err != nil {
		return err
	}
	defer dst.Close()
	res, err := rewrite.Rewrite(ctx, src, dir, dst, o)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, res.URL)
	return err
}
