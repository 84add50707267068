// Package sdkharness owns weir's side of the Beam Fn API: the control, data,
// state, logging and provision services that SDK harnesses connect to (one
// gRPC port, multiplexed by the worker_id metadata every harness call
// carries), the environments that start those harnesses (LOOPBACK through
// an external worker pool, PROCESS by running the staged Go worker binary),
// and the Worker handle the engine uses to register descriptors, run
// bundles, split them and finalize them.
//
// A Worker never panics on a gRPC error: when a harness goes away every
// bundle in flight on it fails with an error naming the worker, and the
// engine decides whether to retry on a new worker.
package sdkharness
