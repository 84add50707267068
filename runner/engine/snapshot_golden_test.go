package engine

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/weir-runner/weir/runner/wire"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenTaskState exercises every field of a subtask's engine state.
func goldenTaskState() *taskState {
	return &taskState{
		Pending:     [][]byte{{0x01, 0x02}, []byte("abc")},
		PendingFile: pendingFile,
		Delayed:     []delayedState{{Data: []byte{0xff, 0x00}, WM: 1_700_000_000_000, DelayMS: 250}},
		Sides:       [][][]byte{{[]byte("side")}},
		InWM:        42,
		Fired:       -7,
		Dropped:     3,
	}
}

// TestTaskStateGolden: the checkpoint's subtask state encodes to the bytes
// in testdata (a change of them breaks every checkpoint taken before it:
// only add fields), and those bytes decode to the same state. A state
// with no fields set decodes with both watermarks at the minimum.
func TestTaskStateGolden(t *testing.T) {
	path := filepath.Join("testdata", "taskstate.golden.json")
	got, err := json.Marshal(goldenTaskState())
	if err != nil {
		t.Fatal(err)
	}
	if *updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (write it with -update): %v", err)
	}
	if !bytes.Equal(got, bytes.TrimSpace(want)) {
		t.Errorf("task state encodes as\n%s\nthe golden file has\n%s", got, want)
	}
	dec, err := decodeTaskState(want)
	if err != nil {
		t.Fatalf("decoding the golden bytes: %v", err)
	}
	if !reflect.DeepEqual(dec, goldenTaskState()) {
		t.Errorf("golden bytes decode to %+v, want %+v", dec, goldenTaskState())
	}
	empty, err := decodeTaskState(nil)
	if err != nil || empty.InWM != wire.MinTimestamp || empty.Fired != wire.MinTimestamp {
		t.Errorf("empty state decodes to %+v, %v; want both watermarks at the minimum", empty, err)
	}
	if _, err := decodeTaskState([]byte(`{"in_wm": "x"}`)); err == nil {
		t.Error("a malformed state decoded without error")
	}
}
