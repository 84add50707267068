package checkpoint

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/weir-runner/weir/checkpoint/storage"
)

func TestDecodeRun(t *testing.T) {
	for _, tc := range []struct {
		name, data, err string
	}{
		{"ok", `{"format":"weir-run","version":1,"job":"j","first_checkpoint":3,"started":"2026-01-02T03:04:05Z"}`, ""},
		{"finished", `{"format":"weir-run","version":1,"job":"j","first_checkpoint":1,"started":"2026-01-02T03:04:05Z","finished":"2026-01-02T03:05:05Z","last_checkpoint":9}`, ""},
		{"not json", `{"format":`, "not a weir run record"},
		{"foreign", `{"format":"weir-lease","version":1}`, `format "weir-lease"`},
		{"newer", `{"format":"weir-run","version":2,"job":"j"}`, "newer weir"},
		{"negative", `{"format":"weir-run","version":1,"job":"j","first_checkpoint":-1}`, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeRun([]byte(tc.data))
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("DecodeRun: %v, want %q", err, tc.err)
			}
		})
	}
}

func TestRunRecord(t *testing.T) {
	ctx := context.Background()
	st, err := storage.NewFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r, err := ReadRun(ctx, st, "j")
	if err != nil || r != nil {
		t.Fatalf("no record: %+v, %v", r, err)
	}
	if !r.Mine(1) {
		t.Fatal("without a record every checkpoint is the run's")
	}
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	if err := WriteRun(ctx, st, "j", Run{First: 4, Started: now}); err != nil {
		t.Fatal(err)
	}
	r, err = ReadRun(ctx, st, "j")
	if err != nil || r.First != 4 || r.Finished != nil || r.Job != "j" {
		t.Fatalf("read back %+v, %v", r, err)
	}
	if r.Mine(3) || !r.Mine(4) {
		t.Fatal("Mine: checkpoints below First are an earlier run's")
	}
	r.Finished, r.Last = &now, 7
	if err := WriteRun(ctx, st, "j", *r); err != nil {
		t.Fatal(err)
	}
	if r, err = ReadRun(ctx, st, "j"); err != nil || r.Finished == nil || !r.Finished.Equal(now) || r.Last != 7 {
		t.Fatalf("finished record read back as %+v, %v", r, err)
	}
	// Another job's record under this name is foreign.
	if err := WriteRun(ctx, st, "k", Run{}); err != nil {
		t.Fatal(err)
	}
	data, _ := readObject(ctx, st, RunName("k"))
	if err := st.Put(ctx, RunName("j"), strings.NewReader(string(data))); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRun(ctx, st, "j"); !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), "j/_run") {
		t.Fatalf("foreign record: %v", err)
	}
}
