// Package typescript owns weir's test that pipelines of Beam's TypeScript
// SDK run unmodified on `weir serve`: the pipelines (plain JavaScript that
// checks its own results with the SDK's assertDeepEqual), the pinned SDK
// (package.json and package-lock.json; node_modules is installed by the
// test with npm ci, never committed), and the Go test that starts weir
// serve, runs each pipeline with node against it, and stops what it
// started.
package typescript
