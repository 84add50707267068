package main

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/sdf"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/rtrackers/offsetrange"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/stats"
)

// Txn is one synthetic card transaction.
type Txn struct {
	Seq      int64  // position in the generated stream
	Account  string // "acct-03"
	Merchant string // category: "grocery", "fuel", ...; "deposit" for money in
	Cents    int64  // > 0 money in, < 0 a purchase
	Millis   int64  // event time, milliseconds since the Unix epoch
}

// GenSpec describes the generated stream. It travels in the generator's
// input elements, so every split and resumption of the source sees the
// same one.
type GenSpec struct {
	StartMillis    int64 // event time of transaction 0
	IntervalMicros int64 // event-time gap between transactions (1e6 / rate)
	Accounts       int
	Events         int64 // 0: unbounded (runs until drained)
	// Shards is how many source elements share the stream: shard k emits
	// transactions k, k+Shards, k+2·Shards, ... The runner spreads them
	// over its subtasks, each with its own watermark. Any number works
	// with any parallelism: the output is the same.
	Shards int
}

// Shard is the generator's input element: one shard of a stream.
type Shard struct {
	Spec  GenSpec
	Index int
}

// seq is the transaction number of the shard's j-th transaction.
func (s Shard) seq(j int64) int64 { return j*int64(s.Spec.Shards) + int64(s.Index) }

// size is the number of transactions of the shard.
func (s Shard) size() int64 {
	n, k := s.Spec.end(), int64(s.Index)
	if k >= n {
		return 0
	}
	return (n - k + int64(s.Spec.Shards) - 1) / int64(s.Spec.Shards)
}

// EventMillis is the event time of transaction i.
func (g GenSpec) EventMillis(i int64) int64 { return g.StartMillis + i*g.IntervalMicros/1000 }

// end is the restriction end: Events, or for an unbounded stream a
// century of transactions, which no one will wait for, and which keeps
// event times far from overflowing however the runner splits the range.
func (g GenSpec) end() int64 {
	if g.Events > 0 {
		return g.Events
	}
	return 100 * 365 * 24 * 3600 * 1_000_000 / max(g.IntervalMicros, 1)
}

var merchants = []string{"grocery", "fuel", "dining", "online", "travel"}

// MakeTxn is transaction i of the stream described by g: a pure function
// of (g, i), so the stream is the same however it is split and replayed.
// About one in six is a deposit of $20–$380, the rest purchases of
// $1–$80: balances random-walk around where they start.
func MakeTxn(g GenSpec, i int64) Txn {
	h := splitmix64(uint64(i) ^ 0x5eed_cafe)
	t := Txn{
		Seq:     i,
		Account: fmt.Sprintf("acct-%02d", h%uint64(g.Accounts)),
		Millis:  g.EventMillis(i),
	}
	if (h>>24)%6 == 0 {
		t.Merchant = "deposit"
		t.Cents = 2000 + int64((h>>32)%36000)
	} else {
		t.Merchant = merchants[(h>>16)%uint64(len(merchants))]
		t.Cents = -(100 + int64((h>>32)%7900))
	}
	return t
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// generateFn is an unbounded splittable DoFn: its element is a Shard and
// its restriction a range of the shard's transactions. Paced, it emits each transaction once the wall
// clock reaches its event time, then returns ResumeProcessingIn so the
// runner calls it again later; its watermark is the event time of the
// next transaction it will emit. Not paced (tests, benchmarks), it emits
// its whole range at once. On drain its restriction is truncated to
// nothing, so it stops.
type generateFn struct {
	Paced bool
	// Tick is the least time between resumptions when paced, so a fast
	// stream is emitted in small batches rather than one bundle each.
	Tick time.Duration
}

func (fn *generateFn) CreateInitialRestriction(sh Shard) offsetrange.Restriction {
	return offsetrange.Restriction{Start: 0, End: sh.size()}
}

func (fn *generateFn) SplitRestriction(_ Shard, r offsetrange.Restriction) []offsetrange.Restriction {
	return []offsetrange.Restriction{r}
}

// RestrictionSize is the work available now: what is already due.
func (fn *generateFn) RestrictionSize(sh Shard, r offsetrange.Restriction) float64 {
	if !fn.Paced {
		return float64(r.End - r.Start)
	}
	g := sh.Spec
	due := (time.Now().UnixMilli() - g.StartMillis) * 1000 / max(g.IntervalMicros, 1) / int64(g.Shards)
	return float64(max(0, min(r.End, due)-r.Start))
}

func (fn *generateFn) CreateTracker(r offsetrange.Restriction) *sdf.LockRTracker {
	return sdf.NewLockRTracker(offsetrange.NewTracker(r))
}

// TruncateRestriction runs when the job is drained: nothing more to emit.
func (fn *generateFn) TruncateRestriction(_ *sdf.LockRTracker, _ Shard) offsetrange.Restriction {
	return offsetrange.Restriction{}
}

func (fn *generateFn) CreateWatermarkEstimator() *sdf.ManualWatermarkEstimator {
	return &sdf.ManualWatermarkEstimator{}
}

func (fn *generateFn) ProcessElement(we *sdf.ManualWatermarkEstimator, rt *sdf.LockRTracker, sh Shard, emit func(beam.EventTime, Txn)) (sdf.ProcessContinuation, error) {
	g := sh.Spec
	r := rt.GetRestriction().(offsetrange.Restriction)
	j := r.Start
	we.UpdateWatermark(time.UnixMilli(g.EventMillis(sh.seq(j))))
	now := time.Now().UnixMilli()
	for ; j < r.End; j++ {
		i := sh.seq(j)
		ms := g.EventMillis(i)
		if fn.Paced && ms > now {
			break
		}
		if !rt.TryClaim(j) {
			// The runner split the range here (or drained us).
			return sdf.StopProcessing(), rt.GetError()
		}
		emit(mtime.FromMilliseconds(ms), MakeTxn(g, i))
		// The watermark: no later transaction of this restriction is
		// earlier than the next one.
		we.UpdateWatermark(time.UnixMilli(g.EventMillis(sh.seq(j + 1))))
		if j%1024 == 0 {
			now = time.Now().UnixMilli()
		}
	}
	if j >= r.End {
		return sdf.StopProcessing(), nil
	}
	wait := time.Until(time.UnixMilli(g.EventMillis(sh.seq(j))))
	return sdf.ResumeProcessingIn(min(max(wait, fn.Tick), 10*time.Second)), nil
}

// Alert says an account's balance went below zero.
type Alert struct {
	Account string
	Txn     Txn   // the transaction that took it below zero
	Balance int64 // cents, after Txn
}

// Summary is one account at the end of one period.
type Summary struct {
	Account   string
	EndMillis int64 // end of the period (exclusive)
	Txns      int   // transactions in the period
	Balance   int64 // cents, after the period
}

// balanceFn keeps each account's running balance. Transactions can reach
// it out of event-time order, so it buffers them in ordered-list state by
// event time and applies them in order only when the watermark has passed
// the end of their period: an event-time timer per account at the end of
// the earliest period with buffered transactions. When the timer fires it
// applies that period's transactions to the balance (ValueState), alerts
// on every transaction that takes the balance below zero, emits the
// period's summary and sets the timer for the next buffered period. The
// output is the same whatever order the transactions arrive in.
type balanceFn struct {
	PeriodMillis int64
	OpeningCents int64
	Balance      state.Value[int64]     // cents, after every applied transaction
	Pending      state.OrderedList[Txn] // not yet applied, sorted by event time
	TimerEnd     state.Value[int64]     // end of the period the timer is set for
	PeriodTimer  timers.EventTime
}

func newBalanceFn(period time.Duration, openingCents int64) *balanceFn {
	return &balanceFn{
		PeriodMillis: period.Milliseconds(),
		OpeningCents: openingCents,
		Balance:      state.MakeValueState[int64]("balance"),
		Pending:      state.MakeOrderedListState[Txn]("pending"),
		TimerEnd:     state.MakeValueState[int64]("timerEnd"),
		PeriodTimer:  timers.InEventTime("periodEnd"),
	}
}

// periodEnd is the end (exclusive) of the period holding ms.
func (fn *balanceFn) periodEnd(ms int64) int64 {
	return (ms/fn.PeriodMillis + 1) * fn.PeriodMillis
}

// setTimer sets the account's timer to fire when the watermark passes
// the last millisecond of the period ending at end.
func (fn *balanceFn) setTimer(sp state.Provider, tp timers.Provider, end int64) error {
	fn.PeriodTimer.Set(tp, time.UnixMilli(end-1))
	return fn.TimerEnd.Write(sp, end)
}

func (fn *balanceFn) ProcessElement(sp state.Provider, tp timers.Provider, acct string, t Txn, _ func(Alert), _ func(Summary)) error {
	if err := fn.Pending.Add(sp, t.Millis, t); err != nil {
		return err
	}
	end := fn.periodEnd(t.Millis)
	set, ok, err := fn.TimerEnd.Read(sp)
	if err != nil {
		return err
	}
	if !ok || end < set {
		return fn.setTimer(sp, tp, end)
	}
	return nil
}

func (fn *balanceFn) OnTimer(_ context.Context, _ beam.EventTime, sp state.Provider, tp timers.Provider, acct string, _ timers.Context, alert func(Alert), summary func(Summary)) error {
	end, ok, err := fn.TimerEnd.Read(sp)
	if err != nil || !ok {
		return err
	}
	due, _, err := fn.Pending.ReadRange(sp, 0, end)
	if err != nil {
		return err
	}
	txns := make([]Txn, len(due))
	for i, v := range due {
		txns[i] = v.Value
	}
	sort.Slice(txns, func(i, j int) bool { return txns[i].Seq < txns[j].Seq })
	bal, ok, err := fn.Balance.Read(sp)
	if err != nil {
		return err
	}
	if !ok {
		bal = fn.OpeningCents
	}
	for _, t := range txns {
		before := bal
		bal += t.Cents
		if before >= 0 && bal < 0 {
			alert(Alert{Account: acct, Txn: t, Balance: bal})
		}
	}
	if err := fn.Pending.ClearRange(sp, 0, end); err != nil {
		return err
	}
	if err := fn.Balance.Write(sp, bal); err != nil {
		return err
	}
	summary(Summary{Account: acct, EndMillis: end, Txns: len(txns), Balance: bal})

	// Transactions of later periods that arrived before this timer fired.
	later, _, err := fn.Pending.ReadRange(sp, end, math.MaxInt64)
	if err != nil {
		return err
	}
	if len(later) > 0 {
		return fn.setTimer(sp, tp, fn.periodEnd(later[0].SortKey))
	}
	return fn.TimerEnd.Clear(sp)
}

func keyByAccount(t Txn) (string, Txn) { return t.Account, t }
func merchantOf(t Txn) string          { return t.Merchant }
func centsOf(t Txn) int64              { return t.Cents }

type merchantCount struct {
	Merchant string
	N        int
}

func toMerchantCount(m string, n int) merchantCount { return merchantCount{m, n} }

// FormatWindow is one line per window: transactions per merchant and the
// net amount.
func FormatWindow(start, end int64, counts []merchantCount, net int64) string {
	sort.Slice(counts, func(i, j int) bool { return counts[i].Merchant < counts[j].Merchant })
	total := 0
	var b strings.Builder
	for _, c := range counts {
		total += c.N
		fmt.Fprintf(&b, "  %s %d", c.Merchant, c.N)
	}
	return fmt.Sprintf("window %s-%s  %d txns  net %s %s", clock(start), clock(end), total, money(net), b.String())
}

func formatWindowFn(w beam.Window, _ int, counts func(*merchantCount) bool, nets func(*int64) bool) string {
	var cs []merchantCount
	var c merchantCount
	for counts(&c) {
		cs = append(cs, c)
	}
	var net, n int64
	for nets(&n) {
		net += n
	}
	iw := w.(window.IntervalWindow)
	return FormatWindow(int64(iw.Start), int64(iw.End), cs, net)
}

// FormatAlert and FormatSummary are the printed lines.
func FormatAlert(a Alert) string {
	return fmt.Sprintf("ALERT %s overdrawn at %s by txn #%d (%s %s): balance %s",
		a.Account, clockMillis(a.Txn.Millis), a.Txn.Seq, a.Txn.Merchant, money(a.Txn.Cents), money(a.Balance))
}

func FormatSummary(s Summary) string {
	return fmt.Sprintf("%s  until %s  %d txns  balance %s", s.Account, clock(s.EndMillis), s.Txns, money(s.Balance))
}

func clock(ms int64) string       { return time.UnixMilli(ms).UTC().Format("15:04:05") }
func clockMillis(ms int64) string { return time.UnixMilli(ms).UTC().Format("15:04:05.000") }

func money(cents int64) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%s$%d.%02d", sign, cents/100, cents%100)
}

// velocityFn (version 2 of the pipeline, --velocity) counts each
// account's transactions per fixed window in state of the key and window,
// and when the watermark passes the window's end emits a VELOCITY line if
// there were more than Limit. A job started from a savepoint of version 1
// starts it with empty state: its counts begin with the restore.
type velocityFn struct {
	Limit int64
	Count state.Value[int64]
	End   timers.EventTime
}

func newVelocityFn(limit int) *velocityFn {
	return &velocityFn{Limit: int64(limit), Count: state.MakeValueState[int64]("count"), End: timers.InEventTime("windowEnd")}
}

func (fn *velocityFn) ProcessElement(w beam.Window, sp state.Provider, tp timers.Provider, acct string, _ Txn, _ func(string)) error {
	n, ok, err := fn.Count.Read(sp)
	if err != nil {
		return err
	}
	if !ok {
		fn.End.Set(tp, w.MaxTimestamp().ToTime())
	}
	return fn.Count.Write(sp, n+1)
}

func (fn *velocityFn) OnTimer(_ context.Context, ts beam.EventTime, sp state.Provider, _ timers.Provider, acct string, _ timers.Context, emit func(string)) error {
	n, _, err := fn.Count.Read(sp)
	if err != nil {
		return err
	}
	if n > fn.Limit {
		emit(FormatVelocity(acct, ts.Milliseconds()+1, n))
	}
	return fn.Count.Clear(sp)
}

// FormatVelocity is the line of an account with n transactions in the
// window ending at endMillis.
func FormatVelocity(acct string, endMillis, n int64) string {
	return fmt.Sprintf("VELOCITY %s: %d transactions in the window to %s", acct, n, clockMillis(endMillis))
}

func printFn(line string) { fmt.Println(line) }

func init() {
	register.DoFn4x2[*sdf.ManualWatermarkEstimator, *sdf.LockRTracker, Shard, func(beam.EventTime, Txn), sdf.ProcessContinuation, error](&generateFn{})
	register.Emitter2[beam.EventTime, Txn]()
	register.DoFn6x1[state.Provider, timers.Provider, string, Txn, func(Alert), func(Summary), error](&balanceFn{})
	register.Emitter1[Alert]()
	register.Emitter1[Summary]()
	register.Function1x2(keyByAccount)
	register.Function1x1(merchantOf)
	register.Function1x1(centsOf)
	register.Function2x1(toMerchantCount)
	register.Function4x1(formatWindowFn)
	register.Iter1[merchantCount]()
	register.Iter1[int64]()
	register.Function1x1(FormatAlert)
	register.Function1x1(FormatSummary)
	register.Function1x0(printFn)
	register.DoFn6x1[beam.Window, state.Provider, timers.Provider, string, Txn, func(string), error](&velocityFn{})
	register.Emitter1[string]()
	beam.RegisterType(reflect.TypeOf((*Shard)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*Txn)(nil)).Elem())
}

// Options are the pipeline's knobs.
type Options struct {
	Spec    GenSpec
	Paced   bool          // release transactions at their event time (the real-time stream)
	Tick    time.Duration // least time between source resumptions when paced
	Window  time.Duration // fixed windows for counts, and the balance summary period
	Opening int64         // opening balance of every account, cents
	// Velocity > 0 is version 2: it adds the velocity check, a new stateful
	// transform, alerting on more than Velocity transactions of an
	// account in a window.
	Velocity int
}

// Outputs are the pipeline's findings, as printable lines.
type Outputs struct {
	Windows   beam.PCollection // string: one per window
	Alerts    beam.PCollection // string: one per transaction that overdrew an account
	Summaries beam.PCollection // string: one per account and period with transactions
	// Velocity (version 2 only; else invalid) is one line per account and
	// window with more than Options.Velocity transactions.
	Velocity beam.PCollection
}

// Build is the pipeline: a generated stream of transactions, running
// balances per account with overdraft alerts, and counts per fixed window.
func Build(s beam.Scope, o Options) Outputs {
	shards := make([]Shard, max(o.Spec.Shards, 1))
	for k := range shards {
		shards[k] = Shard{Spec: o.Spec, Index: k}
		shards[k].Spec.Shards = len(shards)
	}
	txns := beam.ParDo(s.Scope("Generate"), &generateFn{Paced: o.Paced, Tick: o.Tick}, beam.CreateList(s.Scope("Shards"), shards))

	// Running balances: stateful, keyed by account, in the global window.
	bs := s.Scope("Balances")
	alerts, summaries := beam.ParDo2(bs, newBalanceFn(o.Window, o.Opening), beam.ParDo(bs, keyByAccount, txns))

	// Counts and net amount per fixed window.
	ws := s.Scope("Windows")
	windowed := beam.WindowInto(ws, window.NewFixedWindows(o.Window), txns)
	counts := beam.ParDo(ws, toMerchantCount, stats.Count(ws, beam.ParDo(ws, merchantOf, windowed)))
	net := stats.Sum(ws, beam.ParDo(ws, centsOf, windowed))
	joined := beam.CoGroupByKey(ws, beam.AddFixedKey(ws, counts), beam.AddFixedKey(ws, net))

	out := Outputs{
		Windows:   beam.ParDo(ws, formatWindowFn, joined),
		Alerts:    beam.ParDo(bs, FormatAlert, alerts),
		Summaries: beam.ParDo(bs, FormatSummary, summaries),
	}
	if o.Velocity > 0 {
		// Version 2's feature, in a scope of its own: the unique names of
		// the transforms above, and so where their state goes in a
		// savepoint, stay as they were.
		vs := s.Scope("Velocity")
		byAcct := beam.WindowInto(vs, window.NewFixedWindows(o.Window), beam.ParDo(vs, keyByAccount, txns))
		out.Velocity = beam.ParDo(vs, newVelocityFn(o.Velocity), byAcct)
	}
	return out
}
