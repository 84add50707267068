// Package checkpoint owns the stored form of checkpoints: which objects a
// checkpoint consists of, their layout in a storage.Storage, the versioned
// metadata that makes a checkpoint complete, and the operations on them:
// incremental upload of a subtask's Pebble checkpoint (Uploader), the atomic
// commit (Commit), finding the newest usable checkpoint (Latest), restoring a
// subtask's Pebble directory (Restore) and garbage collection (Retain). The
// coordinator that decides when to do these, and the barriers, live elsewhere.
//
// # Layout
//
//	<job>/shared/<sha256>-<nonce>.sst        immutable sstables (and .blob
//	                                         files), named by content and by
//	                                         the upload that created them,
//	                                         shared by every later checkpoint
//	                                         that has the same content
//	<job>/chk-<N>/<stage>-<subtask>/<file>   the subtask's mutable Pebble files
//	                                         (MANIFEST, OPTIONS, markers, WAL)
//	<job>/chk-<N>/<stage>-<subtask>/_files   the subtask's file list, written
//	                                         before its uploads
//	<job>/chk-<N>/_metadata                  Metadata, create-only: the commit
//	<job>/_lease                             the lease of the one job that
//	                                         writes these (see AcquireLease)
//
// Naming sstables by content, not by Pebble's file number, matters: file
// numbers are reused by a DB restored from a checkpoint. Content already in
// the last committed checkpoint is not uploaded again, across incarnations
// too. The nonce (random per upload) means an upload never writes a name
// that exists already, so garbage collection cannot delete an object that a
// concurrent upload is re-creating.
//
// # Life of a checkpoint
//
// Per subtask, synchronously: db.Pebble().Flush() and db.Pebble().Checkpoint
// (dir) (dir must not exist). Then, asynchronously, Uploader.Upload(dir)
// returns the subtask's file list. When every subtask has one, the coordinator
// builds the Metadata and calls Commit; then Uploader.Committed on every
// uploader, and Retain. On recovery, Latest finds the checkpoint and Restore
// rebuilds each subtask's directory, which is opened with ErrorIfNotExists.
//
// # Metadata format
//
// One line of JSON carrying "format": "weir-checkpoint" and "version" (see
// FormatVersion), then the line "weir-checksum sha256:<hex>" over the JSON
// line. Decode refuses truncated, corrupt, newer-version and foreign metadata.
package checkpoint
