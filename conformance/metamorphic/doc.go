// Package metamorphic is weir's differential, metamorphic test harness, after
// Pebble's metamorphic package: from a seed it generates a random Beam Go
// pipeline (sources, ParDos with several outputs, GroupByKey, CoGroupByKey,
// Flatten, Reshuffle, lifted and unlifted combines, side inputs of every kind,
// fixed, sliding and session windows, stateful DoFns with every state kind and
// event- and processing-time timers), computes in plain Go the exact multiset
// of records each sink must receive (the model), draws weir's internal limits,
// parallelism, worker mode, checkpoints and an injected fault, runs the
// pipeline on a weir server, and compares what the sinks committed with the
// model. A failing seed prints its settings, the pipeline, the difference and
// the command that replays it, and is shrunk to a smaller failing variant.
//
// The package owns:
//   - model.go, ops.go, spec.go, gen.go, diff.go, shrink.go: generation and the
//     model, with no Beam import (table tests in model_test.go);
//   - dofns.go and build.go: the registered, parameterised DoFns and the
//     translation of a Spec into a beam.Pipeline;
//   - sink.go: the exactly-once sinks and how their files are read back;
//   - metamorphic_test.go: the test driver (TestMetamorphic and its flags);
//   - kill_test.go: the kill -9 fault (a child process, TestKillChild);
//   - repro_test.go: minimal pipelines of the bugs it found (TestRepro).
package metamorphic
