// Package engine owns the execution of a plan: every stage runs as P
// subtasks, each a goroutine that owns its state and reads one bounded
// inbox. Data and control (end of input, watermarks) travel in the same
// inbox in FIFO order, so control never overtakes data. Full inboxes are
// the backpressure. SDK stages run bundles on harness workers and retry
// failed ones; GroupByKey stages buffer their input in Pebble through
// package state and emit groups when their windows are complete.
package engine
