package runner

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/portability"
	"github.com/weir-runner/weir/savepoint"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestSavepointDirOption: --savepoint_dir is a server default (weir serve's
// flag) that a job's pipeline option overrides.
func TestSavepointDirOption(t *testing.T) {
	srv := DefaultCheckpointConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	srv.Bind(fs)
	if err := fs.Parse([]string{"--savepoint_dir=file:///srv/sp"}); err != nil {
		t.Fatal(err)
	}
	c, err := srv.forJob(&structpb.Struct{})
	if err != nil || c.SavepointDir != "file:///srv/sp" {
		t.Errorf("a job without the option: savepoint dir %q, %v; want the server's file:///srv/sp", c.SavepointDir, err)
	}
	opts, err := structpb.NewStruct(map[string]any{"beam:option:go_options:v1": map[string]any{
		"options": map[string]any{"savepoint_dir": "gs://bucket/sp"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	c, err = srv.forJob(opts)
	if err != nil || c.SavepointDir != "gs://bucket/sp" {
		t.Errorf("a job with --savepoint_dir=gs://bucket/sp: savepoint dir %q, %v", c.SavepointDir, err)
	}
}

// fakeSavepointer returns its name after recording where it was asked to
// write, or its error.
type fakeSavepointer struct {
	err    error
	target string
	format savepoint.Format
}

func (f *fakeSavepointer) Savepoint(_ context.Context, target storage.Storage, format savepoint.Format) (string, error) {
	f.target, f.format = target.String(), format
	return "savepoint-cards-1", f.err
}

// closeCounter counts the Close calls of a storage.
type closeCounter struct {
	storage.Storage
	closed *int
}

func (c closeCounter) Close() error {
	*c.closed++
	return c.Storage.Close()
}

func TestTakeSavepointTarget(t *testing.T) {
	root := t.TempDir()
	var opened []string
	closed := 0
	x := &executor{s: &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil)), cfg: Config{
		OpenStorage: func(ctx context.Context, url string) (storage.Storage, error) {
			opened = append(opened, url)
			st, err := storage.Open(ctx, url)
			return closeCounter{st, &closed}, err
		},
	}}}
	ctx := t.Context()
	dir, target := "file://"+root+"/default", "file://"+root+"/requested"

	sp := &fakeSavepointer{}
	path, err := x.takeSavepoint(ctx, sp, dir, portability.SavepointRequest{Target: target, Type: "native"})
	if want := target + "/savepoint-cards-1"; err != nil || path != want || sp.target != target || sp.format != savepoint.Native {
		t.Errorf("with a target: %q, %v (written to %s, %s); want %s, native", path, err, sp.target, sp.format, want)
	}
	path, err = x.takeSavepoint(ctx, sp, dir, portability.SavepointRequest{})
	if want := dir + "/savepoint-cards-1"; err != nil || path != want || sp.target != dir || sp.format != savepoint.Canonical {
		t.Errorf("without a target: %q, %v (written to %s, %s); want the job's dir %s, canonical", path, err, sp.target, sp.format, want)
	}
	if _, err := x.takeSavepoint(ctx, sp, "", portability.SavepointRequest{}); err == nil || err.Error() != "no --savepoint_dir and no --target" {
		t.Errorf("without a target or a dir: %v", err)
	}
	if _, err := x.takeSavepoint(ctx, sp, dir, portability.SavepointRequest{Type: "sst"}); err == nil || !strings.Contains(err.Error(), `unknown savepoint format "sst"`) {
		t.Errorf("an unknown type: %v", err)
	}
	failed := errors.New("barrier timed out")
	_, err = x.takeSavepoint(ctx, &fakeSavepointer{err: failed}, dir, portability.SavepointRequest{})
	if !errors.Is(err, failed) || !strings.Contains(err.Error(), "savepoint into "+dir) {
		t.Errorf("a failing savepoint: %v; want it wrapped, naming %s", err, dir)
	}
	_, err = x.takeSavepoint(ctx, sp, "", portability.SavepointRequest{Target: "ftp://host/sp"})
	if err == nil || !strings.Contains(err.Error(), "savepoint target ftp://host/sp") {
		t.Errorf("an unsupported target: %v", err)
	}
	if want := []string{target, dir, dir, "ftp://host/sp"}; strings.Join(opened, " ") != strings.Join(want, " ") {
		t.Errorf("opened %q, want %q", opened, want)
	}
	if closed != 3 {
		t.Errorf("closed the target %d times, want 3 (every one opened)", closed)
	}
}
