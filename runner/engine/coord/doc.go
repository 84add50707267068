// Package coord owns checkpoint coordination as single-threaded state
// machines, in the style of etcd raft's RawNode: the Coordinator decides
// when a checkpoint starts, which subtasks the coordinator itself must
// trigger, when a checkpoint commits or aborts, and which bundles each
// commit finalizes; the Aligner decides what a subtask's task loop sees of
// its inbox around barriers. Neither has a goroutine, a lock, a clock or
// any I/O: events go in with the time they happened, actions come out,
// and the engine's shells carry them out (send barriers, upload, write
// metadata, finalize, delete). Scripts in testdata/ drive both
// (TestScripts).
package coord
