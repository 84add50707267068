// Package sdkharness owns weir's side of the Beam Fn API: the control, data,
// state, logging and provision services that SDK harnesses connect to (one
// gRPC port, multiplexed by the worker_id metadata every harness call
// carries), the environments that start those harnesses (LOOPBACK through
// an external worker pool, PROCESS by running the staged Go worker binary),
// and the choice among them (Server.Start). Harnesses of other SDKs are
// served as the Fn API allows them to differ from the Go SDK's (foreign.go):
// they fetch their descriptors, with or without worker_id, and may open
// their data stream only for their first bundle.
//
// It implements the engine's harness.Worker twice: Worker, a harness
// connected over the Fn API, and InProcess, which runs bundles in this
// process (what --runner=weir uses): the pipeline's code is linked into
// the binary, so bundles run through the Go SDK's own execution package
// (exec), the same code a harness runs, with input, output and timers
// handed over as byte slices and state requests made as function calls.
// The engine cannot tell them apart. A bundle's state requests, Fn State
// API protos from a harness or the Go SDK's calls in process, become typed
// calls on the engine's harness.State (StateServer), which also pages
// large reads: a bag read in n pages is read once.
//
// A Worker never panics on a gRPC error: when a harness goes away every
// bundle in flight on it fails with an error naming the worker, and the
// engine decides whether to retry on a new worker.
package sdkharness
