// Package plan owns the translation of a Beam pipeline proto into weir's
// execution plan: it checks that weir can run every transform, coder,
// window fn and requirement (refusing the rest by name and URN), expands
// splittable DoFns, lifts combiners, fuses SDK transforms into stages,
// decides how each edge is partitioned (forward, hash by key group,
// round robin, broadcast for side inputs), chooses the coders elements
// travel in, and builds the ProcessBundleDescriptor of every SDK stage.
//
// It is pure logic over protos: no goroutines, no I/O.
package plan
