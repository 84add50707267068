// Package engine owns the execution of a plan: every stage runs as P
// subtasks, each a goroutine that owns its state and reads one bounded
// inbox. Data and control (watermarks, checkpoint barriers, end of input)
// travel in the same inbox in FIFO order, so control never overtakes data;
// full inboxes are the backpressure. A watermark W says every element at or
// before W has arrived: GroupByKeys fire windows whose max timestamp is at
// or before it, and holds (timers' output timestamps, splittable DoFns'
// estimates, parked side-input input) keep it just below what they hold.
//
// What each file holds:
//   - engine.go: Run (restarts from checkpoints), runOnce, the task kinds;
//   - router.go, msg.go: keyed exchanges, broadcasts, messages and inboxes;
//   - sdk.go: SDK stages (sdkTask.step takes one event: a message, a
//     wake-up, the drain, the coordinator's request; run is the shell
//     that waits for it), their barriers, snapshots and restores;
//   - bundle.go: running one bundle on a harness worker (input cut to
//     bundle size, retries on a new worker or the same one, state batch,
//     timers set, outputs, finalization);
//   - timers.go, keyed.go: firing timers and expiring state of stateful
//     stages; per-key user state and timers served from Pebble (package
//     state) as typed calls (harness.State: bag, multimap, ordered list,
//     side inputs);
//   - deferred.go: residuals a splittable DoFn deferred, their watermark
//     holds, and the drain;
//   - side*.go: side inputs, their readiness per window, parked main input;
//   - splitter.go: runtime splits of a running splittable bundle (when
//     and at what fraction: splitNow); splitpool.go: work split off
//     shared between a stage's subtasks, and a subtask's last phase of
//     taking it; progress.go, pool.go: progress, the worker pool;
//   - harness/: the contract with an SDK harness (harness.Worker: register,
//     run a bundle, split, output size, finalize; harness.State: a
//     bundle's state), which package sdkharness implements over the Fn API
//     and in process (translating the Fn State API into harness.State
//     calls), and fakeharness_test.go with a fake that needs no SDK;
//   - gbk.go, gbk_trigger.go: GroupByKeys, default (gbkTask.step per
//     message) and triggered (triggeredGBK.step per message, wake-up or
//     TestStream tick);
//   - teststream.go, quiet.go: TestStream replay, which waits for quiescence;
//   - coord/: checkpoint coordination's decisions as state machines
//     (coord.Coordinator: when checkpoints start, time out, commit or
//     abort, what each commit finalizes; coord.Aligner: what a task sees
//     of its inbox around barriers), driven by scripts in coord/testdata;
//   - checkpoint.go, align.go, snapshot.go: their goroutine shells (the
//     coordinator's ticks, barriers, uploads, commits and finalization;
//     the aligner between a subtask's inbox and its task loop, and the
//     gate senders wait at after a barrier), a subtask's snapshot and
//     restore;
//   - metrics.go: attempted and committed metrics (scripts of their
//     hand-over, and of finalization, in testdata/handover); limits.go: every
//     internal limit (Limits), which tests set small.
//
// Every wait and every reading of time goes through Options.Clock.
//
// TestScripts runs the scripts in testdata/<kind>: sdk (an SDK subtask on
// the fake harness, with barriers and restores), gbk and trigger (a
// GroupByKey subtask), handover (metrics and finalization through the
// coordinator), each stepping a subtask without its goroutine.
package engine
