// Package portability owns weir's Beam Job API: preparing, running, watching and cancelling jobs, and artifact staging and retrieval.
//
// A [Server] implements three gRPC services of Beam's portability framework, registered on a gRPC server
// that weir shares with the Fn API:
//
//   - JobService: Prepare validates the pipeline with the [Executor] and stores a preparation; Run turns it
//     into a [Job] and calls [Executor.Execute] in a goroutine the server owns; the state and message
//     streams, metrics, pipeline and cancellation are served from the Job.
//   - ArtifactStagingService: between Prepare and Run the client opens ReverseArtifactRetrievalService and
//     sends its staging token (the preparation id); the server then asks it to resolve each environment's
//     dependencies and to send each one, writes them under the staging directory, and rewrites the
//     environment's dependencies to beam:artifact:type:file:v1 artifacts naming the local files (roles kept).
//     A client that never stages (or offers nothing) can still Run.
//   - ArtifactRetrievalService: serves the staged files to SDK workers (for example a PROCESS environment's
//     boot loader). Only files this server staged are served.
//
// A job's life: STOPPED (prepared and run) → STARTING → RUNNING → DONE, FAILED or CANCELLED (via CANCELLING).
// Every state change and every message is kept in one ordered log; message streams replay it from the start,
// so late subscribers see the whole history, and end after the terminal state. When Execute fails its error
// is sent as a JOB_MESSAGE_ERROR message just before FAILED, which is what Beam's runnerlib waits for.
//
// A job's staged files are removed when the job ends, and the whole staging directory by [Server.Stop] if the
// server created it.
package portability
