// Package savepoint owns the stored form of savepoints: the layout of a
// savepoint directory, its versioned and checksummed metadata, the framing
// of its data files, and writing (Create, Writer, RecordWriter) and reading
// (Open, Savepoint, RecordReader, List, FindLatest) them. It knows nothing
// of the engine: what state a job has, how it is taken out of Pebble and
// put back, and how transforms of a new pipeline map onto those of a
// savepoint are decided elsewhere (see "Left for integration").
//
// A savepoint is owned by the user. It is portable and self-contained:
// every path in it is relative to its directory, so the directory can be
// copied or moved anywhere and opened from there. Its content does not
// depend on Pebble's layout nor on transform IDs: state is stored per
// stateful transform unique name and per state or timer ID, per key group,
// with the coder IDs needed to read it and the pipeline proto that holds
// those coders and every windowing strategy. That is a canonical
// savepoint, the default; a native one (below) holds Pebble's files
// instead, for restores at checkpoint speed into the same pipeline.
//
// # Never claimed (Flink's NO_CLAIM)
//
// weir never deletes a savepoint, and a job restored from one never writes
// into it or deletes its files. This package has no call that deletes
// anything; Create refuses a directory that has any file in it (ErrExists),
// Commit writes _metadata create-only, and a Savepoint only reads. The
// files of a failed attempt stay where they are (without _metadata they are
// not a savepoint: Open and List ignore them); take the next savepoint
// under another ID. Only the user deletes a savepoint: `weir savepoint
// dispose` (savepoint/inspect.Dispose).
//
// # Layout
//
// Names are relative to a storage.Storage rooted at the savepoint target:
//
//	savepoint-<job>-<id>/_metadata        the metadata, written last and
//	                                      create-only: the commit
//	savepoint-<job>-<id>/pipeline.pb      the pipeline proto, as given
//	savepoint-<job>-<id>/t<N>-kg<A>-<B>.rec  keyed data files: user state and
//	savepoint-<job>-<id>/g<N>-kg<A>-<B>.rec  timers (t), GroupByKey buffers and
//	                                      trigger state (g) of owner N, key
//	                                      groups [A, B)
//	savepoint-<job>-<id>/s<N>-<K>.rec     unkeyed data files: side inputs and
//	savepoint-<job>-<id>/r<N>-<K>.rec     parked input (s), source residuals
//	                                      (r), file K of owner N
//	savepoint-<job>-<id>/native/<N>/<S>/<F>  native savepoints only: file F
//	                                      of the Pebble checkpoint of
//	                                      subtask S of stage N
//
// N numbers the owners (transforms, GroupByKeys, ...) of a section in the
// order the writer met them; the names mean nothing to a reader, which
// finds every file through the metadata. A job name is 1 to 128 of
// [A-Za-z0-9_.-] starting with a letter or digit; a savepoint ID is 1 to
// 128 of [A-Za-z0-9_] starting with a letter or digit, so the directory
// name parses back at its last '-' (DirName, ParseDirName).
//
// # Metadata
//
// _metadata is one line of JSON, then the line "weir-checksum sha256:<hex>"
// holding the lowercase hex SHA-256 of the JSON line and its newline (the
// same sealing as checkpoint metadata). The JSON object has:
//
//	format           "weir-savepoint"
//	version          the format version: 1 (FormatVersion) for canonical
//	                 savepoints, 2 for native ones
//	job, id          the job's name and the savepoint's ID
//	created          RFC 3339 time the savepoint was taken
//	max_parallelism  the job's key-group count, in [1, 32768]
//	parallelism      the parallelism it was taken at
//	pipeline         the pipeline file: {path: "pipeline.pb", size, sha256}
//	transforms       stateful transforms, each: unique_name; dofn (the DoFn's
//	                 identity, opaque); states [{id, kind (value, bag,
//	                 combining, map, set, ordered_list), key_coder,
//	                 window_coder, value_coder, user_key_coder}]; timers [{id,
//	                 domain (event, processing), key_coder, window_coder}];
//	                 files
//	groups           GroupByKeys: unique_name, key_coder, value_coder,
//	                 window_coder, files
//	side_inputs      transforms that read side inputs: unique_name; inputs
//	                 [{id (local name), kind (iterable, multimap), key_coder,
//	                 value_coder, window_coder}]; input_coder (of parked main
//	                 input); files
//	sources          unique_name, restriction_coder (optional), files
//	fired_impulses   unique names of the Impulses that have fired
//	type             "native" for a native savepoint (absent: canonical)
//	native           a native savepoint's Pebble checkpoints, each: stage
//	                 (the stage's name), subtask, key_groups ({start, end}),
//	                 transforms (unique name → the transform ID its keys
//	                 carry), side_inputs (reader unique name/local name, in
//	                 the DB's order), files [{path, size, sha256, local
//	                 (the file's name in the DB directory)}]
//
// Coders are coder IDs of the pipeline proto. A file is {path (relative to
// the savepoint directory), size, sha256 (lowercase hex), key_groups
// ({start, end}, half-open; keyed sections only), records (the count)}.
// Lists are written sorted (by unique name, ID, path). Decoding refuses
// (ErrCorrupt) a wrong checksum, unknown fields, empty or repeated names,
// unknown kinds, missing coders, key-group ranges that are empty, outside
// [0, max_parallelism) or overlap within an owner, and any path that is
// absolute, has a '.', '..' or empty component or a backslash, is
// _metadata, or is listed twice; another format is ErrForeign, a newer
// version ErrNewerFormat. Open also refuses (ErrForeign) metadata whose job
// or ID differ from those of a directory named savepoint-<job>-<id>.
//
// # Data files
//
// A data file is a header, frames, and a footer frame:
//
//	header  "WEIRSAVE" (8 bytes), uvarint format version (1)
//	frame   kind (1 byte), uvarint n, body (n bytes), CRC-32C (Castagnoli,
//	        4 bytes big endian) of kind, n and body
//	footer  a frame of kind 0 whose body is the uvarint record count and the
//	        32-byte SHA-256 of every byte of the file before the footer
//
// and nothing after the footer. Bodies are fields in a fixed order: key
// groups and lengths are uvarints, times (Beam milliseconds) and other
// integers zig-zag varints, byte strings and strings a uvarint length and
// the bytes (an empty one reads back as nil). By kind:
//
//	1 state        key group, key, window, state ID, user key, sort key, value
//	2 timer        key group, key, window, family, tag, domain (1 byte: 1
//	               event, 2 processing), fire time, hold (output time),
//	               pane (Beam's PaneInfo encoding, as the timer was set)
//	3 group value  key group, key, window, timestamp, value
//	4 trigger      key group, key, window, trigger state
//	5 side input   side input ID, window, key (none for iterable), values
//	6 parked       need, min timestamp, elements
//	7 residual     restriction, watermark
//
// Keys, windows and values are the bytes of the declared coders (nested
// encoding is not added); trigger state, restrictions and the DoFn identity
// are opaque to this package. In the keyed sections (state and timers of
// transforms; values and trigger state of GroupByKeys) records come in
// ascending key-group order and inside the file's range; the side input
// section holds side input and parked records, the source section
// residuals. A reader (RecordReader) checks all of this, each frame's CRC
// before it returns the record, and at the end the footer, the absence of
// trailing bytes and the size, SHA-256 and count in the metadata; every
// error names the file by store URL and object name. Records are known good
// only once the whole file has been read without error.
//
// # Native savepoints
//
// A canonical restore writes every key again (2M records became 5M Pebble
// keys in 1.4–1.9 s at 1M keys, bench/savepoint.md); a native savepoint
// (Flink's --type native; `weir savepoint take --type=native`) copies each
// stateful subtask's Pebble checkpoint into native/ and restores like a
// checkpoint: each new subtask downloads the files of the savepoint
// subtask whose key groups hold its own, checking their sizes and
// SHA-256, and excises the key groups it does not own (state.DB.Clip). It
// keeps the declarations, sources and fired Impulses of a canonical one,
// but its keyed state, side inputs and parked input are only in the
// Pebble files: no data files in the keyed and side input sections, and
// `weir savepoint inspect` and `rewrite` refuse it. The engine restores
// it only at its own parallelism or a multiple (each new subtask's key
// groups inside one savepoint subtask's), into stages of the same names
// whose stateful transforms keep their unique names and IDs and whose
// side inputs keep their order, with no state migrated, renamed or
// dropped; anything else is refused before the job starts, with the fix:
// a canonical savepoint.
//
// # Versioning
//
// FormatVersion covers the metadata and the data files. A change to any
// encoding or to the meaning of a field bumps it; readers refuse newer
// versions (ErrNewerFormat) and keep reading every older one. Adding a
// record kind or a metadata field is a change: version 1 readers refuse
// unknown kinds and fields. Native savepoints' metadata is version 2 (a
// canonical savepoint's stays 1, readable by every weir since 1): a
// version 1 reader refuses it instead of restoring no state.
//
// # Who uses it
//
// The engine takes savepoints (runner/engine/savepoint.go: a checkpoint
// taken now, each subtask's Pebble checkpoint exported by state/portable
// into keyed files of at most max parallelism / 32 key groups each, so
// that a restore reads only the files of its key groups; source residuals
// and fired Impulses from its engine state, declarations from the
// pipeline, Commit when every file is closed) and starts jobs from them at
// any parallelism, its subtasks importing at once, each through a bulk
// load (state.Load), each file checked as it is read
// (runner/engine/savepoint_restore.go:
// matching by unique name, refusing state with nowhere to go unless
// --allow_non_restored_state, and, by planRestore in
// savepoint_compat.go, a changed DoFn, key coder, windowing or state
// coder, compared with the savepoint's pipeline.pb; row-coded state
// migrated by field name; importing each subtask's key groups). A stop
// with savepoint (runner/engine/stop.go) writes one of the checkpoint at
// which the sources stopped, or of a drained job's end. The job server's
// weir.v1.Savepoints Take and Stop (package portability), `weir
// savepoint`, `weir stop` and SIGTERM trigger them; savepoint/inspect and
// `weir savepoint` list, inspect and dispose of them; savepoint/rewrite
// and `weir savepoint rewrite` write a new savepoint from one offline (max
// parallelism, renames by Rename, the restore's mapping, drops).
//
// Known limits: a bag or ordered-list record is one append of the SDK
// (a row-coded value may be several, which migration joins per cell), not
// one element; a GroupByKey's fired watermark and a non-source stage's
// input that arrived after its inputs ended are not stored (such a
// savepoint is refused when taken: take it again).
package savepoint
