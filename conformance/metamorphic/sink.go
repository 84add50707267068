package metamorphic

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
)

// Exactly-once sinks.
//
// A sink DoFn buffers its bundle's records (Record's canonical lines) and,
// in FinishBundle, writes them to <dir>/<sink>/<attempt>, one file per bundle
// attempt. It emits the attempt's ID, once per bundle, into a manifest: all
// sinks' IDs are flattened, grouped under one key in the global window and
// written by one DoFn to <dir>/manifest-* when the input ends. Only bundles
// whose output weir committed reach the manifest, so a failed or replayed
// attempt's file is never counted (Beam's WriteFiles does the same).
//
// Each bundle also registers a bundle finalization callback, which writes
// <dir>/<sink>/<attempt>.fin: weir must finalize only committed bundles,
// and every committed one, except those of a job that restarted, and those
// the Go SDK drops: it runs the callbacks of one plan instance only once
// (exec.Plan.Finalize gives the plan a new finalizer but its ParDos keep the
// old one), so a bundle that registers on a finalizer whose callbacks
// already ran is marked stale and not required to finalize.

// attempts numbers bundle attempts in this process.
var attempts atomic.Int64

// finalizers records, per run dir and SDK finalizer, whether the
// finalizer's callbacks have run.
var finalizers sync.Map // finalizerKey -> *atomic.Bool

type finalizerKey struct {
	dir string
	bf  beam.BundleFinalization
}

// sinkFn is the sink of one collection.
type sinkFn struct {
	Dir, Name string
	Coll      Coll

	buf   []string
	id    string
	stale bool
}

func (fn *sinkFn) StartBundle(_ func(string)) {
	fn.buf, fn.id, fn.stale = fn.buf[:0], "", false
}

// record buffers one element and, on the bundle's first, names the attempt,
// emits its ID and registers its finalization.
func (fn *sinkFn) record(w beam.Window, ts beam.EventTime, bf beam.BundleFinalization, k, v int64, emit func(string)) {
	if fn.id == "" {
		fn.id = fmt.Sprintf("%s/%d", fn.Name, attempts.Add(1))
		emit(fn.id)
		v, _ := finalizers.LoadOrStore(finalizerKey{fn.Dir, bf}, &atomic.Bool{})
		ran := v.(*atomic.Bool)
		fn.stale = ran.Load()
		fin := filepath.Join(fn.Dir, fn.id+".fin")
		bf.RegisterCallback(time.Hour, func() error {
			ran.Store(true)
			return os.WriteFile(fin, nil, 0o644)
		})
	}
	fn.buf = append(fn.buf, Record(fn.Coll, Elem{K: k, V: v, T: int64(ts), W: fromBeamWindow(w)}))
}

func (fn *sinkFn) FinishBundle(_ func(string)) error {
	if fn.id == "" {
		return nil
	}
	var b strings.Builder
	if fn.stale {
		b.WriteString("#stale\n")
	}
	for _, l := range fn.buf {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return writeFileAtomic(filepath.Join(fn.Dir, fn.id+".rec"), b.String())
}

type sinkKVFn struct{ sinkFn }

func (fn *sinkKVFn) ProcessElement(w beam.Window, ts beam.EventTime, bf beam.BundleFinalization, k, v int64, emit func(string)) {
	fn.record(w, ts, bf, k, v, emit)
}

type sinkNumFn struct{ sinkFn }

func (fn *sinkNumFn) ProcessElement(w beam.Window, ts beam.EventTime, bf beam.BundleFinalization, v int64, emit func(string)) {
	fn.record(w, ts, bf, 0, v, emit)
}

// manifestFn writes the IDs of every committed sink bundle: one file per
// pane, named by the job's incarnation (restarts from a checkpoint so far)
// and its content, so that a retried bundle rewrites the same file. The
// last incarnation's files count: an earlier one may have written its
// manifest and failed before the bundle committed. A correct run has one
// pane (the global window's, when the input ends); readCommitted reports
// more.
type manifestFn struct{ Dir string }

// manifestMarker is the manifest's input that is no sink's bundle.
const manifestMarker = "-"

// incarnations counts, per run dir, the restarts of the run's job (the
// test's OnRestart hook), for manifestFn, which runs in the test process.
var incarnations sync.Map // dir -> *atomic.Int64

func incarnation(dir string) *atomic.Int64 {
	v, _ := incarnations.LoadOrStore(dir, &atomic.Int64{})
	return v.(*atomic.Int64)
}

func (fn *manifestFn) ProcessElement(_ int64, ids func(*string) bool) error {
	var all []string
	var id string
	for ids(&id) {
		if id != manifestMarker {
			all = append(all, id)
		}
	}
	sort.Strings(all)
	content := strings.Join(all, "\n") + "\n"
	sum := sha256.Sum256([]byte(content))
	return writeFileAtomic(filepath.Join(fn.Dir, fmt.Sprintf("manifest-%03d-%x", incarnation(fn.Dir).Load(), sum[:8])), content)
}

// writeFileAtomic writes name through a temporary file and a rename, so a
// reader sees all of it or nothing.
func writeFileAtomic(name, content string) error {
	tmp := fmt.Sprintf("%s.tmp%d", name, attempts.Add(1))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

// fromBeamWindow converts a Beam window to the model's.
func fromBeamWindow(w beam.Window) Window {
	if iw, ok := w.(window.IntervalWindow); ok {
		return Window{Start: int64(iw.Start), End: int64(iw.End)}
	}
	return GlobalWindow
}

// addSinks adds spec's sinks and the manifest to the pipeline.
func addSinks(s beam.Scope, spec *Spec, colls map[int]beam.PCollection, dir string) error {
	var ids []beam.PCollection
	for _, sk := range spec.Sinks {
		if err := os.MkdirAll(filepath.Join(dir, sk.Name), 0o755); err != nil {
			return err
		}
		c := spec.Colls[sk.Coll]
		base := sinkFn{Dir: dir, Name: sk.Name, Coll: c}
		sc := s.Scope("sink " + sk.Name)
		var id beam.PCollection
		if c.Type == KVType {
			id = beam.ParDo(sc, &sinkKVFn{base}, colls[sk.Coll])
		} else {
			id = beam.ParDo(sc, &sinkNumFn{base}, colls[sk.Coll])
		}
		ids = append(ids, beam.WindowInto(sc, window.NewGlobalWindows(), id))
	}
	if len(ids) == 0 {
		return errors.New("pipeline has no sinks")
	}
	s = s.Scope("manifest")
	// A marker makes the manifest run when no sink has a record, so a run
	// whose sinks rightly stay empty is told from one that never ended.
	ids = append(ids, beam.Create(s, manifestMarker))
	all := beam.Flatten(s, ids...)
	beam.ParDo0(s, &manifestFn{Dir: dir}, beam.GroupByKey(s, beam.ParDo(s, fixedKey, all)))
	return nil
}

// Committed is what the sinks of a run committed.
type Committed struct {
	Records map[string]map[string]int // sink -> record -> count
	// Bundles counts committed bundles; Finalized those finalized; Stale
	// those whose finalization the Go SDK drops (see above).
	Bundles, Finalized, Stale int
	// Unfinalized are committed, non-stale bundles never finalized;
	// Uncommitted are finalized bundles the manifest does not list.
	Unfinalized, Uncommitted []string
	Problems                 []string // duplicate or missing files
	// ManifestPanes counts the manifest GroupByKey's panes (1 if right).
	ManifestPanes int
}

// readCommitted reads a run's manifest and the files it lists.
func readCommitted(dir string, spec *Spec) (*Committed, error) {
	c := &Committed{Records: map[string]map[string]int{}}
	for _, sk := range spec.Sinks {
		c.Records[sk.Name] = map[string]int{}
	}
	all, err := filepath.Glob(filepath.Join(dir, "manifest-*"))
	if err != nil {
		return nil, err
	}
	sort.Strings(all)
	var panes []string // the last incarnation's
	for _, p := range all {
		inc := strings.SplitN(filepath.Base(p), "-", 3)[1]
		if len(panes) > 0 && strings.SplitN(filepath.Base(panes[0]), "-", 3)[1] != inc {
			panes = panes[:0]
		}
		panes = append(panes, p)
	}
	c.ManifestPanes = len(panes)
	if len(panes) == 0 {
		c.Problems = append(c.Problems, "no manifest: the manifest DoFn never ran")
	}
	var ids []string
	for _, p := range panes {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		ids = append(ids, strings.Fields(string(data))...)
	}
	listed := map[string]bool{}
	for _, id := range ids {
		if listed[id] {
			c.Problems = append(c.Problems, "bundle "+id+" committed twice")
			continue
		}
		listed[id] = true
		c.Bundles++
		name := id[:strings.IndexByte(id, '/')]
		recs, stale, err := readRecords(filepath.Join(dir, id+".rec"))
		if err != nil {
			c.Problems = append(c.Problems, fmt.Sprintf("bundle %s: %v", id, err))
			continue
		}
		for _, r := range recs {
			c.Records[name][r]++
		}
		_, err = os.Stat(filepath.Join(dir, id+".fin"))
		switch {
		case err == nil:
			c.Finalized++
		case stale:
			c.Stale++
		default:
			c.Unfinalized = append(c.Unfinalized, id)
		}
	}
	fins, _ := filepath.Glob(filepath.Join(dir, "*", "*.fin"))
	for _, f := range fins {
		rel, _ := filepath.Rel(dir, f)
		id := strings.TrimSuffix(rel, ".fin")
		if !listed[id] {
			c.Uncommitted = append(c.Uncommitted, id)
		}
	}
	sort.Strings(c.Uncommitted)
	return c, nil
}

func readRecords(name string) (recs []string, stale bool, err error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "#stale" {
			stale = true
			continue
		}
		recs = append(recs, l)
	}
	return recs, stale, sc.Err()
}

// forgetFinalizers drops a finished run's finalizer and incarnation
// records.
func forgetFinalizers(dir string) {
	incarnations.Delete(dir)
	finalizers.Range(func(k, _ any) bool {
		if k.(finalizerKey).dir == dir {
			finalizers.Delete(k)
		}
		return true
	})
}

func init() {
	register.DoFn6x0[beam.Window, beam.EventTime, beam.BundleFinalization, int64, int64, func(string)](&sinkKVFn{})
	register.DoFn5x0[beam.Window, beam.EventTime, beam.BundleFinalization, int64, func(string)](&sinkNumFn{})
	register.DoFn2x1[int64, func(*string) bool, error](&manifestFn{})
}
