// Package rewrite owns the offline rewrite of a savepoint (`weir savepoint
// rewrite`): it reads a committed savepoint and writes a new one in which
// the key groups are recomputed for another max parallelism, transforms
// are renamed, or the state of transforms, or single states and timer
// families, is removed. It is what Flink needs its Java State Processor
// API for, done on the portable format (package savepoint) without Beam
// or the engine.
//
// # What a rewrite does
//
//   - The source savepoint is only read: it is opened and verified in
//     full (every file's checksum) before anything is written, and none of
//     its files is written or deleted. The new savepoint is written with
//     savepoint.Create and savepoint.Writer in a destination that must not
//     be inside the source, under the source's job name and a new ID, and
//     committed with its _metadata last, as the engine commits one; the
//     files of a rewrite that fails stay without _metadata (not a
//     savepoint), as those of a failed take do.
//   - Max parallelism: every keyed record (user state and timers of
//     stateful transforms, GroupByKey buffers and trigger state) gets the
//     key group of its key under the new max parallelism, computed by
//     state.KeyGroup, the function the engine routes and stores keys by;
//     records are regrouped into one file per key-group range of the
//     savepoint's parallelism (capped at the new max parallelism), in
//     ascending key-group order, each key's records in their original
//     order (bag appends, ordered-list ties and buffered values keep their
//     order on import). Before a record moves, its recorded key group must
//     be its key's under the old max parallelism, or the rewrite stops:
//     a savepoint whose keys do not hash to their groups cannot be
//     regrouped from its keys. State not partitioned by key (side inputs,
//     parked input, source residuals, fired Impulses) is carried over
//     unchanged. Regrouping an owner reads its files once per output range
//     and holds one range's records in memory.
//   - Renames (Options.Rename) map unique-name prefixes as
//     --transform_name_mapping does (savepoint.Rename, the function the
//     restore uses): transforms, GroupByKeys, side input readers, sources
//     and fired Impulses. Data files hold no names, so only the metadata
//     changes; the records are copied as they are.
//   - Drops (Options.Drop): NAME removes the state of every owner named
//     NAME or under it ("NAME/...") in every section, and forgets a fired
//     Impulse of that name (a job restored from the result fires it
//     again); NAME/ID removes one state or timer family ID of the stateful
//     transform NAME (its declaration and records). A name that is an
//     owner's is taken as an owner before it is split into NAME/ID. Drops
//     name the source savepoint's owners, before renames.
//   - pipeline.pb is carried over byte for byte: coders are referred to by
//     their IDs in it, and a restore matches state by unique name (after
//     --transform_name_mapping) against the new pipeline, not against the
//     savepoint's pipeline proto, so a renamed savepoint's proto still
//     names the transforms as they were.
//   - The new savepoint keeps the source's creation time: its state is of
//     that moment.
//
// Anything that would make a wrong or ambiguous savepoint is refused
// before a file is written, naming what is wrong: an unknown name to drop
// or rename, two owners renamed to one name, a max parallelism outside
// [1, savepoint.MaxKeyGroups], a destination inside the source, a new
// savepoint directory that exists already.
package rewrite
