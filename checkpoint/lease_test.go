package checkpoint

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weir-runner/weir/checkpoint/storage"
)

const leaseJob = "job-lease"

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// as returns options for a taker with pid on host h (node n), on clock c,
// whose renewer does not run within a test (Renew of an hour) unless the
// test renews by hand.
func as(c *fakeClock, h, n string, pid int, alive func(int) bool) LeaseOptions {
	return LeaseOptions{TTL: 2 * time.Hour, Renew: time.Hour, Now: c.Now, Host: h, Node: n, PID: pid, Alive: alive}
}

func allAlive(int) bool { return true }

func TestTakeOver(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	me := claimant{host: "h1", node: "boot/pid:[1]", pid: 100}
	dead := func(pid int) bool { return pid != 200 } // pid 200 is not running
	held := func(host, node string, pid int, expires time.Time) LeaseInfo {
		return LeaseInfo{Owner: "x", Host: host, Node: node, PID: pid, Expires: expires}
	}
	later := now.Add(time.Minute)
	for _, tc := range []struct {
		name   string
		holder LeaseInfo
		alive  func(int) bool
		want   bool
		why    string
	}{
		{"live, other host", held("h2", "boot/pid:[1]", 200, later), dead, false, ""},
		{"expires now", held("h2", "", 200, now), allAlive, true, "expired"},
		{"expired", held("h2", "", 200, now.Add(-time.Second)), allAlive, true, "expired"},
		{"same host, pid not running", held("h1", "boot/pid:[1]", 200, later), dead, true, "pid 200 on this host, is not running"},
		{"same host, pid running", held("h1", "boot/pid:[1]", 200, later), allAlive, false, ""},
		{"this process (another job of it)", held("h1", "boot/pid:[1]", 100, later), func(int) bool { return false }, false, ""},
		{"this process, expired", held("h1", "boot/pid:[1]", 100, now), allAlive, true, "expired"},
		{"same host name, other node", held("h1", "boot/pid:[2]", 200, later), dead, false, ""},
		{"same host name, other boot", held("h1", "boot2/pid:[1]", 200, later), dead, false, ""},
		{"other host, same pid not running", held("h2", "boot/pid:[1]", 200, later), dead, false, ""},
		{"no pid", held("h1", "boot/pid:[1]", 0, later), func(int) bool { return false }, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := takeOver(tc.holder, now, me, tc.alive)
			if ok != tc.want || !strings.Contains(why, tc.why) || (!ok && why != "") {
				t.Errorf("takeOver = %v, %q; want %v, %q", ok, why, tc.want, tc.why)
			}
		})
	}
}

func TestDecodeLease(t *testing.T) {
	good := LeaseInfo{Owner: "o", Job: "j", Host: "h", PID: 7, Since: time.Unix(10, 0).UTC(), Expires: time.Unix(40, 0).UTC()}
	got, err := DecodeLease(EncodeLease(good))
	if err != nil {
		t.Fatal(err)
	}
	good.Format, good.Version = LeaseFormat, leaseVersion
	if got != good {
		t.Fatalf("round trip: %+v, want %+v", got, good)
	}
	for _, tc := range []struct{ name, data, want string }{
		{"garbage", "not json", "not a weir lease"},
		{"foreign", `{"format":"other","version":1,"owner":"o"}`, `format "other"`},
		{"newer", `{"format":"weir-lease","version":2,"owner":"o"}`, "newer weir"},
		{"no owner", `{"format":"weir-lease","version":1}`, "without an owner"},
	} {
		if _, err := DecodeLease([]byte(tc.data)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: DecodeLease = %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

func TestLeaseOptions(t *testing.T) {
	for _, o := range []LeaseOptions{{TTL: time.Second, Renew: time.Second}, {TTL: time.Second, Renew: -1}, {TTL: -time.Second}} {
		if _, err := o.withDefaults(); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	o, err := LeaseOptions{}.withDefaults()
	if err != nil || o.TTL != DefaultLeaseTTL || o.Renew != DefaultLeaseTTL/3 || o.PID == 0 || o.Host == "" {
		t.Errorf("defaults = %+v, %v", o, err)
	}
}

func TestLease(t *testing.T) {
	for name, open := range stores() {
		t.Run(name, func(t *testing.T) {
			t.Run("held, released, taken again", func(t *testing.T) { testLeaseHeld(t, open(t)) })
			t.Run("expired lease taken over", func(t *testing.T) { testLeaseExpired(t, open(t)) })
			t.Run("dead local holder taken over", func(t *testing.T) { testLeaseDeadHolder(t, open(t)) })
			t.Run("renewal and expiry", func(t *testing.T) { testLeaseRenewal(t, open(t)) })
			t.Run("renewer loses the lease", func(t *testing.T) { testLeaseRenewer(t, open(t)) })
			t.Run("writes that were reported failed", func(t *testing.T) { testLeaseLostResponses(t, open(t)) })
			t.Run("unreadable lease", func(t *testing.T) { testLeaseUnreadable(t, open(t)) })
		})
	}
}

func mustAcquire(t *testing.T, st storage.Storage, o LeaseOptions) *Lease {
	t.Helper()
	l, err := AcquireLease(context.Background(), st, leaseJob, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Release(context.Background()) })
	return l
}

func release(t *testing.T, l *Lease) {
	t.Helper()
	if err := l.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// holder returns the lease's holder as stored.
func holder(t *testing.T, st storage.Storage) LeaseInfo {
	t.Helper()
	info, err := ReadLease(context.Background(), st, leaseJob)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func testLeaseHeld(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	c := newFakeClock()
	a := mustAcquire(t, st, as(c, "h1", "n1", 100, allAlive))
	if prev, _ := a.TookOver(); prev != nil {
		t.Errorf("a fresh lease took over %v", prev)
	}
	if h := holder(t, st); h.PID != 100 || h.Host != "h1" || h.Job != leaseJob || h.Owner == "" || !h.Expires.Equal(c.Now().Add(2*time.Hour)) {
		t.Errorf("stored lease %+v", h)
	}

	// Another process of the same host, running: refused, by name.
	_, err := AcquireLease(ctx, st, leaseJob, as(c, "h1", "n1", 200, allAlive))
	var held *LeaseHeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("second AcquireLease: %v, want a LeaseHeldError", err)
	}
	for _, want := range []string{st.String(), `"` + leaseJob + `"`, LeaseName(leaseJob), "pid 100", "host h1", "since 2030-01-02T03:04:05Z", "expiring 2030-01-02T05:04:05Z", "wait", "stop it", "--job_name"} {
		if !strings.Contains(err.Error(), strings.TrimSuffix(want, "/")) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if held.Self || held.Holder.PID != 100 {
		t.Errorf("LeaseHeldError = %+v", held)
	}
	// Another job of the same process.
	_, err = AcquireLease(ctx, st, leaseJob, as(c, "h1", "n1", 100, allAlive))
	if !errors.As(err, &held) || !held.Self || !strings.Contains(err.Error(), "another job of this process") {
		t.Fatalf("AcquireLease by the holder's process: %v, want a LeaseHeldError naming this process", err)
	}
	if err := a.Check(); err != nil {
		t.Fatalf("the holder's lease after refusals: %v", err)
	}

	release(t, a)
	if _, err := st.Stat(ctx, LeaseName(leaseJob)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("lease after Release: %v, want it gone", err)
	}
	if err := a.Check(); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Check after Release = %v, want ErrLeaseLost", err)
	}
	if err := a.Fence(st).Put(ctx, leaseJob+"/chk-1/x", strings.NewReader("x")); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("write through the fence after Release: %v", err)
	}
	select {
	case <-a.Lost():
	default:
		t.Fatal("Lost not closed after Release")
	}
	b := mustAcquire(t, st, as(c, "h2", "n2", 200, allAlive))
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
}

func testLeaseExpired(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	c := newFakeClock()
	a := mustAcquire(t, st, as(c, "h1", "n1", 100, allAlive))
	fa := a.Fence(st)
	if err := fa.Put(ctx, leaseJob+"/chk-1/a", strings.NewReader("a")); err != nil {
		t.Fatalf("write by the holder: %v", err)
	}
	c.Add(2*time.Hour - time.Nanosecond)
	if _, err := AcquireLease(ctx, st, leaseJob, as(c, "h2", "n2", 200, allAlive)); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("AcquireLease just before expiry: %v, want ErrLeaseHeld", err)
	}
	c.Add(time.Nanosecond)
	b := mustAcquire(t, st, as(c, "h2", "n2", 200, allAlive))
	if prev, why := b.TookOver(); prev == nil || prev.PID != 100 || !strings.Contains(why, "expired") {
		t.Errorf("TookOver = %v, %q", prev, why)
	}
	// The old holder finds out at its next renewal, and writes no more.
	if err := fa.Put(ctx, leaseJob+"/chk-1/a", strings.NewReader("late")); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("write by the expired holder: %v, want ErrLeaseLost", err)
	}
	if err := a.renew(ctx); !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "taken over by pid 200 on host h2") {
		t.Fatalf("renewal of a lease taken over: %v, want ErrLeaseLost naming the new holder", err)
	}
	if err := a.Err(); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Err = %v", err)
	}
	select {
	case <-a.Lost():
	default:
		t.Fatal("Lost not closed")
	}
	c.Add(-time.Hour) // even by a clock that says the lease is valid
	for _, err := range []error{
		fa.Put(ctx, leaseJob+"/chk-1/a", strings.NewReader("late")),
		fa.PutIfAbsent(ctx, leaseJob+"/chk-2/_metadata", nil),
		fa.Delete(ctx, leaseJob+"/chk-1/a"),
	} {
		if !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), leaseJob+"/chk-") {
			t.Errorf("write by the holder that lost the lease: %v, want ErrLeaseLost naming the object", err)
		}
	}
	if got := readAll(t, st, leaseJob+"/chk-1/a"); string(got) != "a" {
		t.Fatalf("the lost holder overwrote an object: %q", got)
	}
	// Releasing the lost lease leaves the new holder's alone.
	release(t, a)
	if h := holder(t, st); h.PID != 200 {
		t.Fatalf("after the old holder's Release the lease is %v", h)
	}
	if err := b.renew(ctx); err != nil {
		t.Fatalf("the new holder's renewal: %v", err)
	}
}

func testLeaseDeadHolder(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	c := newFakeClock()
	a := mustAcquire(t, st, as(c, "h1", "n1", 4242, allAlive))
	notRunning := func(pid int) bool { return pid != 4242 }
	// Elsewhere (another host, or another node of the same host name),
	// pid 4242 is not ours to judge: refused until expiry.
	for _, o := range []LeaseOptions{as(c, "h2", "n1", 100, notRunning), as(c, "h1", "n2", 100, notRunning)} {
		if _, err := AcquireLease(ctx, st, leaseJob, o); !errors.Is(err, ErrLeaseHeld) {
			t.Fatalf("AcquireLease by %s/%s: %v, want ErrLeaseHeld", o.Host, o.Node, err)
		}
	}
	b := mustAcquire(t, st, as(c, "h1", "n1", 100, notRunning))
	if prev, why := b.TookOver(); prev == nil || prev.PID != 4242 || !strings.Contains(why, "pid 4242 on this host, is not running") {
		t.Errorf("TookOver = %v, %q", prev, why)
	}
	if h := holder(t, st); h.PID != 100 {
		t.Fatalf("lease after the takeover: %v", h)
	}
	if err := a.renew(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renewal by the holder taken over: %v", err)
	}
}

func testLeaseRenewal(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	c := newFakeClock()
	a := mustAcquire(t, st, as(c, "h1", "n1", 100, allAlive))
	c.Add(time.Hour)
	if err := a.renew(ctx); err != nil {
		t.Fatal(err)
	}
	want := c.Now().Add(2 * time.Hour)
	if h := holder(t, st); !h.Expires.Equal(want) || !a.Info().Expires.Equal(want) {
		t.Fatalf("after renewal: stored %v, held %v, want expiry %v", h.Expires, a.Info().Expires, want)
	}
	// Past its expiry without a renewal, the holder may not write (someone
	// may have taken over) ...
	c.Add(2 * time.Hour)
	if err := a.Check(); !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Check after expiry = %v", err)
	}
	// ... but nobody did, so a late renewal gets it back.
	if err := a.renew(ctx); err != nil {
		t.Fatalf("late renewal: %v", err)
	}
	if err := a.Check(); err != nil {
		t.Fatalf("Check after the late renewal: %v", err)
	}

	// Renewals that fail are retried, until the lease expires: then it is
	// lost.
	broken := &flakyStorage{Storage: st}
	a.st = broken
	broken.fail.Store(true)
	c.Add(time.Hour)
	if err := a.renew(ctx); err == nil || errors.Is(err, ErrLeaseLost) || a.Err() != nil {
		t.Fatalf("a failed renewal before expiry: %v (lease %v), want a plain error", err, a.Err())
	}
	c.Add(time.Hour)
	if err := a.renew(ctx); !errors.Is(err, ErrLeaseLost) || !errors.Is(err, errFlaky) || !strings.Contains(err.Error(), "before it could be renewed") {
		t.Fatalf("a failed renewal after expiry: %v, want ErrLeaseLost", err)
	}
}

func testLeaseRenewer(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	// Real time: the renewer runs every 10ms; the TTL is long, so that a
	// slow machine cannot make the lease expire.
	a, err := AcquireLease(ctx, st, leaseJob, LeaseOptions{TTL: time.Hour, Renew: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release(ctx)
	first := holder(t, st)
	deadline := time.Now().Add(time.Minute)
	for holder(t, st).Expires.Equal(first.Expires) {
		if time.Now().After(deadline) {
			t.Fatal("the lease was not renewed within a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Someone else takes it (as if they had judged it expired).
	thief := LeaseInfo{Owner: "thief", Job: leaseJob, Host: "elsewhere", PID: 9, Since: time.Now(), Expires: time.Now().Add(time.Hour)}
	for {
		_, v, err := st.GetVersion(ctx, LeaseName(leaseJob))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.PutIf(ctx, LeaseName(leaseJob), EncodeLease(thief), v); err == nil {
			break
		} else if !errors.Is(err, storage.ErrChanged) {
			t.Fatal(err)
		}
	}
	select {
	case <-a.Lost():
	case <-time.After(time.Minute):
		t.Fatal("the renewer did not notice the takeover within a minute")
	}
	if err := a.Err(); !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "pid 9 on host elsewhere") {
		t.Fatalf("Err = %v", err)
	}
	if err := a.Fence(st).PutIfAbsent(ctx, leaseJob+"/chk-9/_metadata", nil); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("commit after the lease was lost: %v", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if h := holder(t, st); h.Owner != "thief" {
		t.Fatalf("Release of a lost lease changed the lease: %v", h)
	}
}

// testLeaseLostResponses: a conditional write that happened although the
// store reported it failed (a retry of it failed its precondition) is
// recognised by the owner token, at taking and at renewal.
func testLeaseLostResponses(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	c := newFakeClock()
	ls := &flakyStorage{Storage: st}
	ls.lieOnce.Store(true)
	a, err := AcquireLease(ctx, ls, leaseJob, as(c, "h1", "n1", 100, allAlive))
	if err != nil {
		t.Fatalf("AcquireLease whose create was reported as ErrExists: %v", err)
	}
	defer a.Release(ctx)
	c.Add(time.Minute)
	ls.lieOnce.Store(true)
	if err := a.renew(ctx); err != nil {
		t.Fatalf("renewal reported as ErrChanged: %v", err)
	}
	if err := a.renew(ctx); err != nil {
		t.Fatalf("the renewal after: %v", err)
	}
	if h := holder(t, st); !h.Expires.Equal(c.Now().Add(2 * time.Hour)) {
		t.Fatalf("stored expiry %v", h.Expires)
	}
}

func testLeaseUnreadable(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	if err := st.PutIfAbsent(ctx, LeaseName(leaseJob), []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	_, err := AcquireLease(ctx, st, leaseJob, LeaseOptions{})
	if err == nil || errors.Is(err, ErrLeaseHeld) || !strings.Contains(err.Error(), "not a weir lease") || !strings.Contains(err.Error(), "delete it") {
		t.Fatalf("AcquireLease over garbage: %v", err)
	}
}

var errFlaky = errors.New("flaky storage (test)")

// flakyStorage fails PutIf while fail is set; with lieOnce set, its next
// PutIf writes and then reports the precondition failed, as a retried
// request whose first response was lost does.
type flakyStorage struct {
	storage.Storage
	fail, lieOnce atomic.Bool
}

func (f *flakyStorage) PutIf(ctx context.Context, name string, data []byte, v storage.Version) (storage.Version, error) {
	if f.fail.Load() {
		return storage.NoVersion, errFlaky
	}
	nv, err := f.Storage.PutIf(ctx, name, data, v)
	if err == nil && f.lieOnce.Swap(false) {
		if v == storage.NoVersion {
			return storage.NoVersion, storage.ErrExists
		}
		return storage.NoVersion, storage.ErrChanged
	}
	return nv, err
}

func TestProcessAlive(t *testing.T) {
	if !ProcessAlive(os.Getpid()) {
		t.Error("this process is not alive")
	}
	if !ProcessAlive(1) {
		t.Error("pid 1 is not alive (it may be another user's: that is alive too)")
	}
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if ProcessAlive(cmd.Process.Pid) {
		t.Errorf("pid %d, which exited and was waited for, is alive", cmd.Process.Pid)
	}
}
