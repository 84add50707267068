package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weir-runner/weir/savepoint/inspect"
)

// goldenSavepoint is the savepoint taken by the runner's end-to-end test
// (runner/testdata/savepoints): real key groups, only read here.
func goldenSavepoint(t *testing.T) string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("..", "..", "runner", "testdata", "savepoints", "savepoint-sp-*"))
	if err != nil || len(dirs) != 1 {
		t.Fatalf("want one golden savepoint in runner/testdata/savepoints, found %v (%v)", dirs, err)
	}
	abs, err := filepath.Abs(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// TestSavepointRewrite: `weir savepoint rewrite` prints the new
// savepoint's path, which holds what the flags asked for, and refuses bad
// arguments naming them.
func TestSavepointRewrite(t *testing.T) {
	src := goldenSavepoint(t)
	dst := t.TempDir()
	var out bytes.Buffer
	err := savepointRewrite(t.Context(), &out, []string{"--max_parallelism=7", "--rename=CountPerKey=Counter", "--drop=Spec/Impulse",
		"--drop=CountPerKey/runner_test.keyCountFn/sum", "--id=small", src, dst})
	if err != nil {
		t.Fatal(err)
	}
	want := "file://" + filepath.ToSlash(dst) + "/savepoint-sp-small"
	if got := strings.TrimSpace(out.String()); got != want {
		t.Fatalf("printed %q, want %q", got, want)
	}
	r, err := inspect.OpenURL(t.Context(), want)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Verify(t.Context()); err != nil {
		t.Fatal(err)
	}
	m := r.Metadata()
	if m.MaxParallelism != 7 || len(m.Transforms) != 1 || m.Transforms[0].UniqueName != "Counter/runner_test.keyCountFn" ||
		len(m.Transforms[0].States) != 1 || m.Transforms[0].States[0].ID != "count" || len(m.FiredImpulses) != 0 || len(m.Sources) != 1 {
		t.Errorf("rewritten metadata: %+v", m)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{src, dst}, "nothing to rewrite"},
		{[]string{"--max_parallelism=7", src}, "want SRC and DST_DIR"},
		{[]string{"--rename=CountPerKey", src, dst}, `rename "CountPerKey": want OLD=NEW`},
		{[]string{"--rename=A=B", "--rename=A=C", src, dst}, `rename "A" given twice`},
		{[]string{"--max_parallelism=0x", src, dst}, "invalid value"},
		{[]string{"--max_parallelism=40000", src, dst}, "max parallelism 40000 outside [1, 32768]"},
		{[]string{"--drop=Nope", src, dst}, `drop "Nope": nothing in the savepoint is named "Nope"`},
		{[]string{"--max_parallelism=7", "--id=small", src, dst}, "exists already"},
		{[]string{"--max_parallelism=7", src, filepath.Join(src, "x")}, "inside the source savepoint"},
		{[]string{"--max_parallelism=7", "relative", dst}, "neither a URL"},
	} {
		if err := savepointRewrite(t.Context(), &out, tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("rewrite %q: err = %v, want it to say %q", tc.args, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(src, "x")); err == nil {
		t.Error("a refused rewrite wrote into the source savepoint")
	}
}
