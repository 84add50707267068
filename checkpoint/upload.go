package checkpoint

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/weir-runner/weir/checkpoint/storage"
)

// Uploader uploads the Pebble checkpoints of one subtask: the asynchronous
// part of a snapshot. Immutable files (sstables, blob files) go to shared/,
// named by their SHA-256 (see sharedName), and are uploaded only if the last
// committed checkpoint does not already have one with the same content; the
// small mutable files (MANIFEST, OPTIONS, markers, WAL) are uploaded under
// the checkpoint's own prefix.
//
// It is safe for concurrent use. Its state is the set of shared objects known
// to be in storage: the ones the checkpoint given to NewUploader or the last
// Committed references. Files uploaded by a checkpoint that is not committed
// yet are not in it (a later checkpoint uploads them again, under a new
// name), so a checkpoint never refers to an object that only an aborted
// checkpoint had, which Retain may remove.
type Uploader struct {
	st          storage.Storage
	job         string
	sub         SubtaskID
	concurrency int

	mu    sync.Mutex
	known map[string]string     // SHA-256 → Remote of shared objects in storage
	cache map[string]hashedFile // local name → hash of the file last seen under it
}

// hashedFile remembers a file's hash, keyed by its identity (inode, size,
// modification time), so hard links of the same sstable in successive Pebble
// checkpoints are read once.
type hashedFile struct {
	info os.FileInfo
	sum  string
}

// UploadResult is what Upload did.
type UploadResult struct {
	// Files go into the subtask's SubtaskState, sorted by local name.
	Files         []File
	TotalBytes    int64 // size of the whole checkpoint
	UploadedBytes int64 // bytes written to storage by this upload
	UploadedFiles int
	ReusedFiles   int // shared files already in storage
}

// NewUploader returns the uploader of subtask sub of job. base is the
// checkpoint the subtask was restored from (or nil): the shared files it
// references are not uploaded again.
func NewUploader(st storage.Storage, job string, sub SubtaskID, base *Metadata) (*Uploader, error) {
	if err := checkJobID(job); err != nil {
		return nil, fmt.Errorf("checkpoint: new uploader: %w", err)
	}
	if sub.Stage == "" || sub.Subtask < 0 {
		return nil, fmt.Errorf("checkpoint: new uploader for job %s: invalid subtask %q", job, sub)
	}
	u := &Uploader{st: st, job: job, sub: sub, concurrency: defaultConcurrency}
	if base != nil {
		if base.JobID != job {
			return nil, fmt.Errorf("checkpoint: new uploader for job %s subtask %s: base checkpoint %d %w (job %s)", job, sub, base.CheckpointID, ErrForeign, base.JobID)
		}
		u.Committed(base)
	}
	return u, nil
}

// SetConcurrency sets how many files are hashed or uploaded at once (default
// 8). Call it before the first Upload.
func (u *Uploader) SetConcurrency(n int) { u.concurrency = max(n, 1) }

// Committed tells the uploader that meta has been committed: from now on the
// shared files it references (of every subtask) count as uploaded, and those
// it does not reference no longer do. Call it before Retain may delete the
// checkpoint the uploader knew before.
func (u *Uploader) Committed(meta *Metadata) {
	known := map[string]string{}
	for _, s := range meta.Subtasks {
		for _, f := range s.Files {
			if strings.HasPrefix(f.Remote, sharedDir) {
				known[f.SHA256] = f.Remote
			}
		}
	}
	u.mu.Lock()
	u.known = known
	u.mu.Unlock()
}

// Upload uploads dir, a Pebble checkpoint of the subtask's DB (made by
// db.Checkpoint after a Flush), as the subtask's part of checkpoint id. The
// directory must not change during the call; the caller removes it after.
func (u *Uploader) Upload(ctx context.Context, id int64, dir string) (*UploadResult, error) {
	fail := func(err error) error {
		return fmt.Errorf("checkpoint: upload %s of subtask %s for checkpoint %d: %w", dir, u.sub, id, err)
	}
	if id < 1 {
		return nil, fail(fmt.Errorf("invalid checkpoint ID %d", id))
	}
	files, err := u.hashDir(ctx, dir)
	if err != nil {
		return nil, fail(err)
	}
	u.mu.Lock()
	known := u.known
	u.mu.Unlock()

	// Decide what to upload. Shared objects already in storage are reused;
	// two local files with one content are uploaded once.
	nonce, err := newNonce()
	if err != nil {
		return nil, fail(err)
	}
	res := &UploadResult{}
	var todo []int
	planned := map[string]string{} // SHA-256 → Remote uploaded by this call
	prefix := subtaskPrefix(id, u.sub)
	for i := range files {
		f := &files[i]
		res.TotalBytes += f.Size
		if !isShared(f.Local) {
			f.Remote = prefix + f.Local
			todo = append(todo, i)
			continue
		}
		if remote, ok := known[f.SHA256]; ok && path.Ext(remote) == path.Ext(f.Local) {
			f.Remote = remote
			res.ReusedFiles++
			continue
		}
		if remote, ok := planned[f.SHA256]; ok && path.Ext(remote) == path.Ext(f.Local) {
			f.Remote = remote // the same content twice in this checkpoint
			res.ReusedFiles++
			continue
		}
		f.Remote = sharedName(f.SHA256, nonce, f.Local)
		planned[f.SHA256] = f.Remote
		todo = append(todo, i)
	}
	res.Files = files // sorted: os.ReadDir sorts by name

	// Record the intent before uploading: Retain keeps the shared objects
	// named by the intents of unfinished checkpoints.
	if err := u.putIntent(ctx, id, files); err != nil {
		return nil, fail(err)
	}
	uploads := make([]*File, len(todo))
	for j, i := range todo {
		uploads[j] = &files[i]
	}
	var mu sync.Mutex
	err = forEach(ctx, len(uploads), u.concurrency, func(ctx context.Context, i int) error {
		f := uploads[i]
		if err := u.uploadFile(ctx, filepath.Join(dir, f.Local), f); err != nil {
			return err
		}
		mu.Lock()
		res.UploadedBytes += f.Size
		res.UploadedFiles++
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, fail(err)
	}
	return res, nil
}

// hashDir lists the files of dir (sorted by name) with their sizes and
// hashes. The hashes of sstables seen by the previous call are reused when
// the file is the same (a hard link to the same inode, same size and time).
func (u *Uploader) hashDir(ctx context.Context, dir string) ([]File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	cache := u.cache
	u.mu.Unlock()
	files := make([]File, len(entries))
	infos := make([]os.FileInfo, len(entries))
	for i, e := range entries {
		if !e.Type().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file", filepath.Join(dir, e.Name()))
		}
		if err := checkLocalName(e.Name()); err != nil {
			return nil, err
		}
		files[i].Local = e.Name()
	}
	err = forEach(ctx, len(files), u.concurrency, func(ctx context.Context, i int) error {
		f := &files[i]
		p := filepath.Join(dir, f.Local)
		info, err := os.Stat(p)
		if err != nil {
			return err
		}
		infos[i] = info
		if c, ok := cache[f.Local]; ok && isShared(f.Local) && os.SameFile(c.info, info) &&
			c.info.Size() == info.Size() && c.info.ModTime().Equal(info.ModTime()) {
			f.Size, f.SHA256 = info.Size(), c.sum
			return nil
		}
		f.SHA256, f.Size, err = hashFile(ctx, p)
		return err
	})
	if err != nil {
		return nil, err
	}
	newCache := make(map[string]hashedFile, len(files))
	for i, f := range files {
		if isShared(f.Local) {
			newCache[f.Local] = hashedFile{info: infos[i], sum: f.SHA256}
		}
	}
	u.mu.Lock()
	u.cache = newCache
	u.mu.Unlock()
	return files, nil
}

// newNonce returns 16 random hex digits.
func newNonce() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random nonce: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// uploadFile uploads the file at p to f.Remote and checks that the bytes sent
// are the ones hashed before.
func (u *Uploader) uploadFile(ctx context.Context, p string, f *File) error {
	r, err := os.Open(p)
	if err != nil {
		return err
	}
	defer r.Close()
	object := u.job + "/" + f.Remote
	n, sum, err := storage.PutHashed(ctx, u.st, object, r)
	if err != nil {
		return err
	}
	if sum != f.SHA256 || n != f.Size {
		// The local file changed after it was hashed: what was sent does
		// not match its name. Remove it (the name is new, nothing else
		// refers to it) rather than leave a lie behind.
		_ = u.st.Delete(ctx, object)
		return fmt.Errorf("%s changed while uploading to %s (%d bytes, sha256 %s; hashed %d bytes, sha256 %s)", p, object, n, sum, f.Size, f.SHA256)
	}
	return nil
}

// hashFile returns the hex SHA-256 and size of the file at p.
func hashFile(ctx context.Context, p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := copyCtx(ctx, h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// copyCtx copies in 1 MiB steps, stopping when ctx is done.
func copyCtx(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := io.CopyN(w, r, 1<<20)
		total += n
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// intent is the content of chk-N/<subtask>/_files.
type intent struct {
	Format       string    `json:"format"`
	Version      int       `json:"version"`
	JobID        string    `json:"job_id"`
	CheckpointID int64     `json:"checkpoint_id"`
	Subtask      SubtaskID `json:"subtask"`
	Files        []File    `json:"files"`
}

const intentFormat = "weir-checkpoint-files"

func (u *Uploader) putIntent(ctx context.Context, id int64, files []File) error {
	body, err := json.Marshal(intent{Format: intentFormat, Version: FormatVersion, JobID: u.job, CheckpointID: id, Subtask: u.sub, Files: files})
	if err != nil {
		return err
	}
	return u.st.Put(ctx, u.job+"/"+subtaskPrefix(id, u.sub)+intentBase, bytes.NewReader(seal(body)))
}

// readIntent returns the files an unfinished checkpoint's subtask uploads.
func readIntent(ctx context.Context, st storage.Storage, object string) ([]File, error) {
	data, err := readObject(ctx, st, object)
	if err != nil {
		return nil, err
	}
	body, err := unseal(data)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: file list %s: %w: %v", object, ErrCorrupt, err)
	}
	var in intent
	if err := json.Unmarshal(body, &in); err != nil || in.Format != intentFormat {
		return nil, fmt.Errorf("checkpoint: file list %s: %w: not a weir file list (%v)", object, ErrCorrupt, err)
	}
	if in.Version > FormatVersion {
		return nil, fmt.Errorf("checkpoint: file list %s: %w: format version %d, this build reads up to %d", object, ErrNewerFormat, in.Version, FormatVersion)
	}
	return in.Files, nil
}
