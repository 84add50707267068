package checkpoint

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weir-runner/weir/checkpoint/storage"
)

// A job's lease keeps its checkpoints to one writer. Two jobs writing
// <dir>/<job>/ at once would take the same chk-N and each one's retention
// would delete the other's files, so a job takes the lease <job>/_lease
// before it restores or writes anything, renews it while it runs and
// releases it when it ends:
//
//   - Taking it is a create-only write (PutIf with NoVersion). If the lease
//     exists, it is refused (ErrLeaseHeld, naming the holder) unless the
//     lease has expired, or its holder was a process on this machine that is
//     no longer running (kill -9, then --resume): then it is taken over with
//     a conditional replace of the version that was read.
//   - Renewing it is a conditional replace of the version last written
//     (GCS: generation match; file://: see storage.fileStorage.PutIf), so a
//     renewal fails if anyone else has taken the lease. Then, or once the
//     lease has expired without a successful renewal, it is lost: Lost is
//     closed, and the store returned by Fence refuses every write.
//   - Releasing it deletes it if it is still at our version.
//
// Expiry is judged by wall clocks, the holder's and the taker's; they must
// agree to well within TTL-Renew. The fence is best effort: a write that
// began before the lease was lost may still land.

// LeaseFormat marks a lease object; leaseVersion is its format version.
const (
	LeaseFormat  = "weir-lease"
	leaseVersion = 1
	leaseBase    = "_lease"
)

// DefaultLeaseTTL is how long a lease lasts without renewal; it is renewed
// every third of that.
const DefaultLeaseTTL = 30 * time.Second

var (
	// ErrLeaseHeld is wrapped by AcquireLease when another job holds the
	// lease (the error is a *LeaseHeldError).
	ErrLeaseHeld = errors.New("checkpoint lease held by another job")
	// ErrLeaseLost is wrapped by a lease's errors once it is lost (taken
	// over, deleted, or expired without renewal) or released.
	ErrLeaseLost = errors.New("checkpoint lease lost")
)

// LeaseName returns the object name of job's lease.
func LeaseName(job string) string { return job + "/" + leaseBase }

// LeaseInfo is the content of a lease object: one line of JSON.
type LeaseInfo struct {
	Format  string    `json:"format"`
	Version int       `json:"version"`
	Owner   string    `json:"owner"` // random, one per taking of the lease
	Job     string    `json:"job"`
	Host    string    `json:"host"`
	Node    string    `json:"node,omitempty"` // this boot and PID namespace of Host (see localNode)
	PID     int       `json:"pid"`
	Since   time.Time `json:"since"`   // when the holder took it
	Expires time.Time `json:"expires"` // unless renewed before
}

// String describes the holder, for messages.
func (i LeaseInfo) String() string {
	return fmt.Sprintf("pid %d on host %s since %s, expiring %s", i.PID, i.Host, i.Since.UTC().Format(time.RFC3339), i.Expires.UTC().Format(time.RFC3339))
}

// EncodeLease returns i as stored, with Format and Version set.
func EncodeLease(i LeaseInfo) []byte {
	i.Format, i.Version = LeaseFormat, leaseVersion
	data, err := json.Marshal(i)
	if err != nil {
		panic(err) // a struct of strings, ints and times always encodes
	}
	return append(data, '\n')
}

// DecodeLease parses a lease object, refusing foreign and newer ones.
func DecodeLease(data []byte) (LeaseInfo, error) {
	var i LeaseInfo
	if err := json.Unmarshal(bytes.TrimSpace(data), &i); err != nil {
		return LeaseInfo{}, fmt.Errorf("not a weir lease: %w", err)
	}
	switch {
	case i.Format != LeaseFormat:
		return LeaseInfo{}, fmt.Errorf("not a weir lease (format %q)", i.Format)
	case i.Version > leaseVersion:
		return LeaseInfo{}, fmt.Errorf("lease of format version %d, written by a newer weir (this one reads %d)", i.Version, leaseVersion)
	case i.Owner == "":
		return LeaseInfo{}, errors.New("lease without an owner")
	}
	return i, nil
}

// LeaseHeldError is AcquireLease's error when another job holds the lease.
type LeaseHeldError struct {
	Store  string // the checkpoint dir
	Object string // URL of the lease object
	Job    string
	Holder LeaseInfo
	// Self is set when the holder is this process: another job of this
	// weir server.
	Self bool
}

func (e *LeaseHeldError) Error() string {
	who := e.Holder.String()
	if e.Self {
		who = "another job of this process (" + who + ")"
	}
	return fmt.Sprintf("checkpoints of job %q in %s are in use: the lease %s is held by %s; "+
		"wait for that job to end (or, if it died, for its lease to expire), stop it, or give this job another --job_name",
		e.Job, e.Store, e.Object, who)
}

func (e *LeaseHeldError) Unwrap() error { return ErrLeaseHeld }

// LeaseOptions configure AcquireLease; zero fields take defaults.
type LeaseOptions struct {
	// TTL is how long the lease lasts without renewal (DefaultLeaseTTL);
	// Renew is the time between renewals (TTL/3), less than TTL.
	TTL, Renew time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time
	// Alive reports whether a process of this machine is running
	// (ProcessAlive).
	Alive func(pid int) bool
	// Host, Node and PID describe the taker (this process; tests pretend
	// to be others).
	Host, Node string
	PID        int
	// OnRenewError hears of every failed renewal that did not lose the
	// lease (yet): the lease is lost if renewals fail until it expires.
	OnRenewError func(error)
}

func (o LeaseOptions) withDefaults() (LeaseOptions, error) {
	if o.TTL == 0 {
		o.TTL = DefaultLeaseTTL
	}
	if o.Renew == 0 {
		o.Renew = o.TTL / 3
	}
	if o.TTL < 0 || o.Renew <= 0 || o.Renew >= o.TTL {
		return o, fmt.Errorf("lease renewal every %s with a TTL of %s: want 0 < renewal < TTL", o.Renew, o.TTL)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Alive == nil {
		o.Alive = ProcessAlive
	}
	if o.Host == "" && o.Node == "" && o.PID == 0 {
		o.Host, o.Node = LocalHost()
		o.PID = os.Getpid()
	}
	return o, nil
}

// LocalHost returns this machine's host name and node: the boot and PID
// namespace of this process on Linux ("" elsewhere). Two processes with the
// same host and node see the same PIDs, so one can tell whether the other is
// running; the node tells apart containers that share a host name but not
// their PIDs, and machines misconfigured with the same name.
func LocalHost() (host, node string) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return host, localNode()
}

func localNode() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(boot)) + "/" + ns
}

// ProcessAlive reports whether process pid of this machine may be running:
// false only if it surely is not (signal 0 finds no such process).
func ProcessAlive(pid int) bool {
	if pid <= 0 {
		return true
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return true // cannot tell
	}
	defer p.Release()
	err = p.Signal(syscall.Signal(0))
	return !errors.Is(err, os.ErrProcessDone) && !errors.Is(err, syscall.ESRCH)
}

// claimant is who wants a lease.
type claimant struct {
	host, node string
	pid        int
}

// takeOver decides whether c may take over the lease held by h at now, and
// why: if it has expired, or if its holder ran on c's machine (same host and
// node) and is not running. A holder that is c's own process (another job of
// the same server) is never taken over before expiry.
func takeOver(h LeaseInfo, now time.Time, c claimant, alive func(int) bool) (ok bool, why string) {
	if !now.Before(h.Expires) {
		return true, fmt.Sprintf("it expired at %s", h.Expires.UTC().Format(time.RFC3339Nano))
	}
	if h.Host != c.host || h.Node != c.node || h.PID <= 0 || h.PID == c.pid {
		return false, ""
	}
	if alive(h.PID) {
		return false, ""
	}
	return true, fmt.Sprintf("its holder, pid %d on this host, is not running", h.PID)
}

// Lease is a held lease; Release ends it. It renews itself in a goroutine
// it owns until Release or until it is lost.
type Lease struct {
	st     storage.Storage
	name   string
	object string // URL, for messages
	o      LeaseOptions

	prev   *LeaseInfo // the lease taken over, if any
	reason string     // why it was taken over

	mu   sync.Mutex
	info LeaseInfo
	ver  storage.Version
	err  error // why it is lost or released; nil while held

	lost        chan struct{} // closed when err is set
	cancel      context.CancelFunc
	done        chan struct{} // closed when the renewer has returned
	releaseOnce sync.Once
	releaseErr  error
}

// objectURL is the URL of object name in st, for messages.
func objectURL(st storage.Storage, name string) string {
	return strings.TrimSuffix(st.String(), "/") + "/" + name
}

// AcquireLease takes job's lease in st, or fails with a *LeaseHeldError
// (wrapping ErrLeaseHeld) naming its holder. The caller must Release it.
func AcquireLease(ctx context.Context, st storage.Storage, job string, o LeaseOptions) (*Lease, error) {
	name := LeaseName(job)
	object := objectURL(st, name)
	o, err := o.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("checkpoint lease %s: %w", object, err)
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // never fails
	token := hex.EncodeToString(raw[:])
	me := claimant{o.Host, o.Node, o.PID}
	const attempts = 5
	for range attempts {
		now := o.Now()
		mine := LeaseInfo{Owner: token, Job: job, Host: o.Host, Node: o.Node, PID: o.PID, Since: now, Expires: now.Add(o.TTL)}
		ver, err := st.PutIf(ctx, name, EncodeLease(mine), storage.NoVersion)
		if err == nil {
			return startLease(st, name, object, o, mine, ver, nil, ""), nil
		}
		if !errors.Is(err, storage.ErrExists) {
			return nil, fmt.Errorf("checkpoint lease %s: taking it: %w", object, err)
		}
		cur, curVer, err := readLease(ctx, st, name)
		if errors.Is(err, storage.ErrNotFound) {
			continue // released meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("checkpoint lease %s: %w; if no job uses these checkpoints, delete it", object, err)
		}
		if cur.Owner == token {
			// Our create did happen: a retry of it found the object.
			return startLease(st, name, object, o, cur, curVer, nil, ""), nil
		}
		ok, why := takeOver(cur, now, me, o.Alive)
		if !ok {
			self := cur.Host == me.host && cur.Node == me.node && cur.PID == me.pid
			return nil, &LeaseHeldError{Store: st.String(), Object: object, Job: job, Holder: cur, Self: self}
		}
		ver, err = st.PutIf(ctx, name, EncodeLease(mine), curVer)
		if errors.Is(err, storage.ErrChanged) {
			continue // someone else moved first (or our write landed): look again
		}
		if err != nil {
			return nil, fmt.Errorf("checkpoint lease %s: taking over from %s: %w", object, cur, err)
		}
		return startLease(st, name, object, o, mine, ver, &cur, why), nil
	}
	return nil, fmt.Errorf("checkpoint lease %s: it changed under each of %d attempts to take it", object, attempts)
}

// readLease reads and decodes lease object name.
func readLease(ctx context.Context, st storage.Storage, name string) (LeaseInfo, storage.Version, error) {
	data, ver, err := st.GetVersion(ctx, name)
	if err != nil {
		return LeaseInfo{}, storage.NoVersion, err
	}
	info, err := DecodeLease(data)
	if err != nil {
		return LeaseInfo{}, storage.NoVersion, fmt.Errorf("reading %s: %w", name, err)
	}
	return info, ver, nil
}

// ReadLease returns job's lease in st; the error wraps storage.ErrNotFound
// if nobody holds it.
func ReadLease(ctx context.Context, st storage.Storage, job string) (LeaseInfo, error) {
	info, _, err := readLease(ctx, st, LeaseName(job))
	if err != nil {
		return LeaseInfo{}, fmt.Errorf("checkpoint lease of job %s in %s: %w", job, st, err)
	}
	return info, nil
}

func startLease(st storage.Storage, name, object string, o LeaseOptions, info LeaseInfo, ver storage.Version, prev *LeaseInfo, why string) *Lease {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Lease{
		st: st, name: name, object: object, o: o, prev: prev, reason: why,
		info: info, ver: ver,
		lost: make(chan struct{}), cancel: cancel, done: make(chan struct{}),
	}
	go l.renewLoop(ctx) // owned by l: ends on Release or when the lease is lost
	return l
}

// TookOver returns the lease this one replaced and why ("it expired at
// ...", "its holder ... is not running"), or nil.
func (l *Lease) TookOver() (prev *LeaseInfo, why string) { return l.prev, l.reason }

// Info is the lease as last written.
func (l *Lease) Info() LeaseInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.info
}

// Lost is closed when the lease is lost or released; Err says why.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Err is nil while the lease is held, and says why it is not (wrapping
// ErrLeaseLost) once it is lost or released.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Check is nil if the lease is held and has not expired by the clock: a
// write may go ahead.
func (l *Lease) Check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	if now := l.o.Now(); !now.Before(l.info.Expires) {
		return fmt.Errorf("%w: %s expired at %s without a successful renewal", ErrLeaseLost, l.object, l.info.Expires.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// lose marks the lease lost (or released) with err, once.
func (l *Lease) lose(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
		close(l.lost)
	}
}

func (l *Lease) renewLoop(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.o.Renew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, l.o.Renew)
		err := l.renew(rctx)
		cancel()
		if l.Err() != nil || ctx.Err() != nil {
			return
		}
		if err != nil && l.o.OnRenewError != nil {
			l.o.OnRenewError(err)
		}
	}
}

// renew extends the lease by a conditional replace of the version last
// written. It loses the lease if someone else has it, or if it fails until
// the lease has expired; other failures are returned and retried.
func (l *Lease) renew(ctx context.Context) error {
	l.mu.Lock()
	info, ver := l.info, l.ver
	l.mu.Unlock()
	now, was := l.o.Now(), info.Expires
	info.Expires = now.Add(l.o.TTL)
	nv, err := l.st.PutIf(ctx, l.name, EncodeLease(info), ver)
	if err == nil {
		l.adopt(info, nv)
		return nil
	}
	if errors.Is(err, storage.ErrChanged) {
		cur, curVer, rerr := readLease(ctx, l.st, l.name)
		switch {
		case rerr == nil && cur.Owner == info.Owner:
			// Our own write landed although it was reported failed (a
			// retry found it done).
			l.adopt(cur, curVer)
			return nil
		case rerr == nil:
			l.lose(fmt.Errorf("%w: %s was taken over by %s", ErrLeaseLost, l.object, cur))
			return l.Err()
		case errors.Is(rerr, storage.ErrNotFound):
			l.lose(fmt.Errorf("%w: %s was deleted by someone else", ErrLeaseLost, l.object))
			return l.Err()
		}
		err = fmt.Errorf("%w, and reading it back: %w", err, rerr)
	}
	if !now.Before(was) {
		l.lose(fmt.Errorf("%w: %s expired at %s before it could be renewed: %w", ErrLeaseLost, l.object, was.UTC().Format(time.RFC3339Nano), err))
		return l.Err()
	}
	return fmt.Errorf("renewing checkpoint lease %s: %w", l.object, err)
}

func (l *Lease) adopt(info LeaseInfo, ver storage.Version) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.info, l.ver = info, ver
	}
}

// Release stops renewing the lease and deletes it if it is still ours.
// Writes through Fence are refused from then on. It may be called more than
// once; later calls return the first one's result.
func (l *Lease) Release(ctx context.Context) error {
	l.releaseOnce.Do(func() {
		l.cancel()
		<-l.done
		l.mu.Lock()
		ver, lost := l.ver, l.err
		l.mu.Unlock()
		l.lose(fmt.Errorf("%w: %s was released", ErrLeaseLost, l.object))
		if lost != nil {
			return // not ours any more
		}
		err := l.st.DeleteIf(ctx, l.name, ver)
		if err != nil && !errors.Is(err, storage.ErrChanged) && !errors.Is(err, storage.ErrNotFound) {
			l.releaseErr = fmt.Errorf("releasing checkpoint lease %s: %w", l.object, err)
		}
	})
	return l.releaseErr
}

// Fence returns st (the store the lease is in) with every write (Put,
// PutIfAbsent, PutIf, Delete, DeleteIf) refused once the lease is lost,
// released or expired, with an error wrapping ErrLeaseLost. Reads and Close
// pass through.
func (l *Lease) Fence(st storage.Storage) storage.Storage { return &fenced{Storage: st, l: l} }

type fenced struct {
	storage.Storage
	l *Lease
}

func (f *fenced) check(op, name string) error {
	if err := f.l.Check(); err != nil {
		return fmt.Errorf("storage: %s %s in %s refused: %w", op, name, f.Storage, err)
	}
	return nil
}

func (f *fenced) Put(ctx context.Context, name string, r io.Reader) error {
	if err := f.check("put", name); err != nil {
		return err
	}
	return f.Storage.Put(ctx, name, r)
}

func (f *fenced) PutIfAbsent(ctx context.Context, name string, data []byte) error {
	if err := f.check("put-if-absent", name); err != nil {
		return err
	}
	return f.Storage.PutIfAbsent(ctx, name, data)
}

func (f *fenced) PutIf(ctx context.Context, name string, data []byte, v storage.Version) (storage.Version, error) {
	if err := f.check("put-if", name); err != nil {
		return storage.NoVersion, err
	}
	return f.Storage.PutIf(ctx, name, data, v)
}

func (f *fenced) Delete(ctx context.Context, name string) error {
	if err := f.check("delete", name); err != nil {
		return err
	}
	return f.Storage.Delete(ctx, name)
}

func (f *fenced) DeleteIf(ctx context.Context, name string, v storage.Version) error {
	if err := f.check("delete-if", name); err != nil {
		return err
	}
	return f.Storage.DeleteIf(ctx, name, v)
}
