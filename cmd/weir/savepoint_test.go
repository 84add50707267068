package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/savepoint/inspect/inspecttest"
)

func TestSavepointCommands(t *testing.T) {
	root := t.TempDir()
	st, err := storage.NewFile(root)
	if err != nil {
		t.Fatal(err)
	}
	dir := inspecttest.Write(t, st)
	path := filepath.Join(root, dir)
	if err := os.MkdirAll(filepath.Join(root, "savepoint-cards-broken"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "savepoint-cards-broken", "pipeline.pb"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	var out, errOut bytes.Buffer
	if err := savepointList(t.Context(), &out, &errOut, []string{root}); err != nil {
		t.Fatal(err)
	}
	want := "JOB    ID   CREATED               MAX PARALLELISM  PARALLELISM  TYPE       SIZE     TRANSFORMS  PATH\n" +
		"cards  sp1  2026-12-06T12:00:00Z  8                2            canonical  " + bytesString(sizeOf(t, path)) + "  1           file://" + path + "\n" +
		"\nincomplete (no _metadata: not savepoints):\n" +
		"  file://" + root + "/savepoint-cards-broken  1 files\n"
	if out.String() != want || errOut.Len() != 0 {
		t.Errorf("list:\n%s\nstderr %q\nwant\n%s", out.String(), errOut.String(), want)
	}

	out.Reset()
	if err := savepointInspect(t.Context(), &out, []string{"--transform=count/Stateful", "--state=total", "--limit=1", "file://" + path}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("inspect printed %d lines, want a header and one record:\n%s", len(lines), out.String())
	}
	var header map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &header); err != nil || header["kind"] != "savepoint" || header["job"] != "cards" || header["records"] != 14.0 {
		t.Errorf("header %s (%v)", lines[0], err)
	}
	if want := `{"kind":"state","transform":"count/Stateful","state":"total","key_group":1,"key":"alice","window":{"start":0,"end":60000},"value":-42}`; lines[1] != want {
		t.Errorf("record %s, want %s", lines[1], want)
	}

	// A damaged data file: refused, naming it; nothing printed.
	rec, _ := filepath.Glob(filepath.Join(path, "r*.rec"))
	b, _ := os.ReadFile(rec[0])
	b[len(b)-1] ^= 1
	os.WriteFile(rec[0], b, 0o644)
	out.Reset()
	err = savepointInspect(t.Context(), &out, []string{path})
	if err == nil || !strings.Contains(err.Error(), filepath.Base(rec[0])) || out.Len() != 0 {
		t.Errorf("inspect of a damaged savepoint: %v, printed %q", err, out.String())
	}

	// Dispose: refuses what is not a savepoint, deletes one.
	if err := savepointDispose(t.Context(), &out, []string{filepath.Join(root, "savepoint-cards-broken")}); err == nil {
		t.Error("dispose of an incomplete directory succeeded")
	}
	out.Reset()
	if err := savepointDispose(t.Context(), &out, []string{"file://" + path}); err != nil {
		t.Fatal(err)
	}
	if want := "disposed file://" + path + ": 6 files deleted\n"; out.String() != want {
		t.Errorf("dispose printed %q, want %q", out.String(), want)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the savepoint directory is still there: %v", err)
	}
}

func sizeOf(t *testing.T, dir string) int64 {
	var n int64
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && e.Name() != "_metadata" {
			n += fi.Size()
		}
	}
	return n
}
