package checkpoint

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/weir-runner/weir/checkpoint/storage"
)

// Restore downloads the files of subtask sub in checkpoint meta into dir
// under their original names, verifying each file's size and SHA-256, so
// that Pebble opens dir (with ErrorIfNotExists: the marker files are part of
// it). dir must be missing or empty. On error, the files written so far are
// removed (and dir, if Restore created it); errors name the object that is
// missing (wrapping storage.ErrNotFound) or wrong (wrapping ErrCorrupt).
func Restore(ctx context.Context, st storage.Storage, meta *Metadata, sub SubtaskID, dir string) error {
	fail := func(err error) error {
		return fmt.Errorf("checkpoint: restore subtask %s of checkpoint %d of job %s into %s: %w", sub, meta.CheckpointID, meta.JobID, dir, err)
	}
	s := meta.Subtask(sub)
	if s == nil {
		return fail(errors.New("the checkpoint has no such subtask"))
	}
	if err := RestoreFiles(ctx, st, meta.JobID, s.Files, dir); err != nil {
		return fail(err)
	}
	return nil
}

// RestoreFiles downloads the files of a Pebble checkpoint, each the object
// prefix/Remote of st (Remote if prefix is ""), into dir under their Local names, as Restore does
// (which it serves; a native savepoint's files are restored with it too).
func RestoreFiles(ctx context.Context, st storage.Storage, prefix string, files []File, dir string) (err error) {
	for _, f := range files {
		if err := checkLocalName(f.Local); err != nil {
			return err
		}
	}
	created, err := prepareDir(dir)
	if err != nil {
		return err
	}
	defer func() {
		if err == nil {
			return
		}
		for _, f := range files {
			_ = os.Remove(filepath.Join(dir, f.Local))
		}
		if created {
			_ = os.Remove(dir)
		}
	}()
	err = forEach(ctx, len(files), defaultConcurrency, func(ctx context.Context, i int) error {
		object := files[i].Remote
		if prefix != "" {
			object = prefix + "/" + object
		}
		return download(ctx, st, object, files[i], dir)
	})
	if err != nil {
		return err
	}
	return storage.SyncDir(dir)
}

// prepareDir makes sure dir exists and is empty, and reports whether it
// created it.
func prepareDir(dir string) (created bool, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return false, err
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			return false, err
		}
		return true, storage.SyncDir(filepath.Dir(dir))
	}
	if err != nil {
		return false, err
	}
	if len(entries) > 0 {
		return false, fmt.Errorf("directory %s is not empty (%s, ...)", dir, entries[0].Name())
	}
	return false, nil
}

// download writes object to dir/f.Local through a temporary file, checking
// size and hash before giving it its name.
func download(ctx context.Context, st storage.Storage, object string, f File, dir string) error {
	r, err := st.Get(ctx, object)
	if err != nil {
		return fmt.Errorf("file %s: %w", f.Local, err)
	}
	defer r.Close()
	tmp, err := os.CreateTemp(dir, ".restore-"+f.Local+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	h := sha256.New()
	n, err := copyCtx(ctx, tmp, io.TeeReader(r, h))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("file %s: download %s: %w", f.Local, object, err)
	}
	if n != f.Size {
		return fmt.Errorf("file %s: object %s %w: %d bytes, metadata says %d", f.Local, object, ErrCorrupt, n, f.Size)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != f.SHA256 {
		return fmt.Errorf("file %s: object %s %w: sha256 %s, metadata says %s", f.Local, object, ErrCorrupt, sum, f.SHA256)
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, f.Local))
}
