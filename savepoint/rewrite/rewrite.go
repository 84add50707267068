package rewrite

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/savepoint"
)

// Result describes the new savepoint.
type Result struct {
	// Dir is its directory in the destination store, URL its URL.
	Dir, URL string
	// Metadata is what it holds.
	Metadata *savepoint.Metadata
	// Regrouped is true if the key groups were recomputed.
	Regrouped bool
	// Records is the number of records written.
	Records int64
	// Dropped describes what the drops removed.
	Dropped []string
}

// rewriter is one rewrite under way.
type rewriter struct {
	src         *savepoint.Savepoint
	w           *savepoint.Writer
	maxP        int // of the new savepoint
	parallelism int // of the new savepoint: its keyed files' ranges
	records     int64
}

// Rewrite reads the committed savepoint in directory srcDir of src ("" if
// src's root is the savepoint directory) and writes a new savepoint, as o
// says, into dst (a store rooted at the directory that is to hold it,
// outside the source). The source is only read. It returns the new
// savepoint once it is committed.
func Rewrite(ctx context.Context, src storage.Storage, srcDir string, dst storage.Storage, o Options) (*Result, error) {
	where := dirURL(src.String(), srcDir)
	fail := func(err error) (*Result, error) {
		return nil, fmt.Errorf("savepoint rewrite of %s: %w", where, err)
	}
	if err := o.check(); err != nil {
		return fail(err)
	}
	if d := strings.TrimRight(dst.String(), "/"); d == where || strings.HasPrefix(d, where+"/") {
		return fail(fmt.Errorf("the destination %s is inside the source savepoint: a savepoint is never written into; give a directory outside it", dst))
	}
	sp, err := savepoint.Open(ctx, src, srcDir)
	if err != nil {
		return fail(err)
	}
	if err := sp.Verify(ctx); err != nil {
		return fail(err)
	}
	m := sp.Metadata()
	if m.IsNative() {
		return fail(errors.New("it is a native savepoint (its state is Pebble files, keyed by transform IDs): only a canonical savepoint can be rewritten; take one with weir savepoint take --type=canonical"))
	}
	p, err := makePlan(m, &o)
	if err != nil {
		return fail(err)
	}
	id := o.ID
	if id == "" {
		if id, err = newID(m.ID); err != nil {
			return fail(err)
		}
	}
	pipeline, err := sp.Pipeline(ctx)
	if err != nil {
		return fail(err)
	}
	w, err := savepoint.Create(ctx, dst, m.Job, id)
	if err != nil {
		return fail(err)
	}
	rw := &rewriter{src: sp, w: w, maxP: cmp.Or(o.MaxParallelism, m.MaxParallelism)}
	rw.parallelism = min(m.Parallelism, rw.maxP)
	nm := p.meta
	nm.Job, nm.ID, nm.Created = m.Job, id, m.Created
	nm.MaxParallelism, nm.Parallelism = rw.maxP, rw.parallelism
	if nm.Pipeline, err = w.Pipeline(ctx, pipeline); err != nil {
		return fail(err)
	}
	regroup := rw.maxP != m.MaxParallelism
	for i := range p.owners {
		o := &p.owners[i]
		var err error
		if regroup && (o.sec == savepoint.SectionTransforms || o.sec == savepoint.SectionGroups) {
			err = rw.regroup(ctx, o)
		} else {
			err = rw.copyFiles(ctx, o)
		}
		if err != nil {
			return fail(fmt.Errorf("%s %q: %w", o.sec, o.old, err))
		}
	}
	if err := w.Commit(ctx, nm); err != nil {
		return fail(err)
	}
	return &Result{Dir: w.Dir(), URL: dirURL(dst.String(), w.Dir()), Metadata: nm, Regrouped: regroup, Records: rw.records, Dropped: p.dropped}, nil
}

// newID derives the new savepoint's ID from the source's: "<id>_rw" and
// six random hex digits, the source's ID shortened to fit.
func newID(srcID string) (string, error) {
	nonce := make([]byte, 3)
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("a new savepoint ID: %w", err)
	}
	suffix := fmt.Sprintf("_rw%x", nonce)
	id := srcID[:min(len(srcID), 128-len(suffix))] + suffix
	if err := savepoint.CheckID(id); err != nil {
		return "", fmt.Errorf("a new savepoint ID: %w", err)
	}
	return id, nil
}

// dirURL is the URL of directory dir of the store at storeURL.
func dirURL(storeURL, dir string) string {
	storeURL = strings.TrimRight(storeURL, "/")
	if dir == "" {
		return storeURL
	}
	return storeURL + "/" + dir
}
