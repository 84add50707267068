// Shared by the pipelines here: runs a pipeline on the job endpoint given as
// --jobEndpoint=HOST:PORT with LOOPBACK workers (in this process), exactly as
// a user of Beam's TypeScript SDK would, and exits 0 only if the job ends
// DONE. Each pipeline checks its own results with assertDeepEqual or
// assertContentsSatisfies: a wrong result fails a bundle, so the job.
"use strict";
const { PortableRunner } = require("apache-beam/runners/portable_runner/runner");

// closure attaches the variables fn uses to fn, as the SDK's TypeScript
// compiler transform would: the SDK serializes fn with them for the worker.
function closure(fn, vars) {
  fn.__closure = () => vars;
  return fn;
}

function flag(name) {
  const prefix = `--${name}=`;
  const arg = process.argv.find((a) => a.startsWith(prefix));
  return arg === undefined ? undefined : arg.slice(prefix.length);
}

// runOn runs pipeline (a function of the pipeline's root) and exits.
function runOn(name, pipeline) {
  const jobEndpoint = flag("jobEndpoint");
  if (!jobEndpoint) {
    console.error(`usage: node ${name}.js --jobEndpoint=HOST:PORT`);
    process.exit(2);
  }
  const runner = new PortableRunner({
    jobEndpoint,
    environmentType: "LOOPBACK",
    jobName: flag("jobName") || name,
  });
  runner
    .run(pipeline)
    .then(() => {
      console.log(`PIPELINE ${name} PASSED`);
      process.exit(0);
    })
    .catch((e) => {
      console.error(`PIPELINE ${name} FAILED:`, e);
      process.exit(1);
    });
}

module.exports = { closure, flag, runOn };
