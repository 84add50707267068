// Package state owns weir's durable keyed state: key groups, the
// order-preserving key encoding, and Pebble databases (one per stateful
// subtask, sharing a block cache).
//
// # Key groups
//
// A key's key group is murmur3_32(seed 0) of its encoded bytes modulo the job's
// maximum parallelism (DefaultMaxParallelism unless configured, fixed for the
// life of a job). Subtask s of P owns the contiguous range KeyGroupRange(s, P,
// maxP), and SubtaskForKeyGroup is its exact inverse. State keys start with the
// big-endian key group (after a per-structure prefix), so a subtask's state
// and a rescale's moves are key ranges.
//
// # Key encoding
//
// Variable-length key parts are written with AppendComponent: 0x00 is escaped
// as 00 FF and each component ends with 00 01. Concatenated components sort
// exactly as the tuples of their raw bytes, so Pebble's byte order is the
// (key, window, ...) order.
//
// # Databases
//
// Open tunes Pebble for this use (see FIELD-NOTES "Pebble v2"): a named format
// major version that supports virtual sstables and Excise, a 64 MiB memtable,
// bloom filters, no WAL (durability comes from checkpoints), and a quiet logger
// that never exits the process. A fatal Pebble error or on-disk corruption
// makes the DB unusable: every later operation returns an error wrapping
// ErrDBFailed, and the caller restores the subtask from a checkpoint.
//
// A DB created empty can be bulk loaded (Load, the restore of a savepoint):
// its bundles' writes are sorted in memory and written as sstables that
// Pebble ingests (without bloom filters: their keys are read back), bypassing
// the memtable and the compactions its flushes cause. A DB restored from
// another subtask's files (a native savepoint's, at a higher parallelism) is
// cut to its own key groups by Clip, which has Pebble excise the rest.
//
// A DB and the structures built on it (GroupBuffer) belong to one subtask
// goroutine and are not safe for concurrent use, except that Close and Err may
// be called from any goroutine.
package state
