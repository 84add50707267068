// Package runner owns weir as a Beam runner: it registers "weir" with the
// Beam Go SDK (blank-import this package and pass --runner=weir), starts
// the embedded server when no --endpoint is given, and assembles that
// server: one gRPC port carrying the Job API, artifact staging and
// retrieval, and the Fn API, with an executor that plans jobs and runs
// them on the engine.
package runner
