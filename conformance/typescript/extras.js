// What else of Beam's TypeScript SDK weir runs, each part checked against
// results made here: a singleton side input from a global combine, an
// iterable side input, a per-key combine with several combiners (sum, max,
// mean, count and a binaryCombineFn), coGroupBy, partition then flatten,
// reshuffle, session windows (merged by weir per key) and sliding windows.
"use strict";
const beam = require("apache-beam");
const { assertDeepEqual } = require("apache-beam/testing/assert");
const { sum, max, mean, count } = require("apache-beam/transforms/combiners");
const { reshuffle } = require("apache-beam/transforms/utils");
const { runOn } = require("./lib");

const nums = Array.from({ length: 200 }, (_, i) => i + 1);
const total = nums.reduce((a, b) => a + b, 0);
const primes = [2, 3, 5, 7, 11, 13, 53, 97, 101, 997]; // 997 is not among nums
const names = [
  { id: 0, name: "zero" },
  { id: 1, name: "one" },
  { id: 1, name: "uno" },
  { id: 5, name: "five" },
];

const expected = {
  // Per 50 s window: the total and count of its numbers, and its primes.
  windows: [0, 50, 100, 150, 200].map((start) => {
    const in_ = nums.filter((n) => n >= start && n < start + 50);
    return {
      start,
      total: in_.reduce((a, b) => a + b, 0),
      count: in_.length,
      primes: primes.filter((p) => p >= start && p < start + 50),
    };
  }),
  perKey: [0, 1, 2].map((m) => {
    const vs = nums.filter((n) => n % 3 === m);
    const s = vs.reduce((a, b) => a + b, 0);
    return { m, sum: s, max: Math.max(...vs), mean: s / vs.length, count: vs.length, min: Math.min(...vs) };
  }),
  joined: [0, 1, 2, 3, 5].map((id) => ({
    id,
    left: nums.filter((n) => n % 4 === id).length,
    right: names.filter((r) => r.id === id).map((r) => r.name).sort(),
  })),
  partitioned: [nums.length],
  reshuffled: [total],
  // a: events at 0, 5, 8 s, then 30, 35 s; b: at 0 s and 100 s; 10 s gaps.
  sessions: [
    { user: "a", start: 0, end: 18, n: 3 },
    { user: "a", start: 30, end: 45, n: 2 },
    { user: "b", start: 0, end: 10, n: 1 },
    { user: "b", start: 100, end: 110, n: 1 },
  ],
  // 0..59 at i seconds in 30 s windows every 10 s: windows starting at -20..50.
  sliding: [-20, -10, 0, 10, 20, 30, 40, 50].map((start) => ({
    start,
    n: nums.filter((i) => i - 1 >= Math.max(start, 0) && i - 1 < Math.min(start + 30, 60)).length,
  })),
};
if (process.argv.includes("--break")) expected.sessions[0].n++; // proves a wrong result fails the job

const events = [
  { user: "a", t: 0 },
  { user: "a", t: 5 },
  { user: "a", t: 8 },
  { user: "a", t: 30 },
  { user: "a", t: 35 },
  { user: "b", t: 0 },
  { user: "b", t: 100 },
];

// Functions given to map are named (the SDK names transforms after them);
// none uses a variable from outside (the SDK serializes them for its worker).
function totalOf(row) {
  return row.total;
}
function summary(total, ctx) {
  const ps = [...ctx.primes.lookup()].sort((a, b) => a - b);
  return { start: ctx.window.lookup().start.toNumber() / 1000, total, count: ctx.count.lookup(), primes: ps };
}
function atSeconds(n, ts) {
  return ts.subtract(ts).add(n * 1000);
}
function byMod3(n) {
  return { m: n % 3, n };
}
function byMod4(n) {
  return { id: n % 4, n };
}
function joinSizes(row) {
  return { id: row.key, left: row.values.left.length, right: row.values.right.map((r) => r.name).sort() };
}
function half(n, k) {
  return n % k;
}
function eventTime(e, ts) {
  return ts.subtract(ts).add(e.t * 1000);
}
function secondsAt(n, ts) {
  return ts.subtract(ts).add((n - 1) * 1000);
}
function session(row, ctx) {
  const w = ctx.window.lookup();
  return { user: row.user, start: w.start.toNumber() / 1000, end: w.end.toNumber() / 1000, n: row.n };
}
function slidingWindow(row, ctx) {
  return { start: ctx.window.lookup().start.toNumber() / 1000, n: row.n };
}
function one(n) {
  return { k: "all", n };
}

// part builds one checked part of the pipeline under its own name.
function part(root, name, build, want) {
  root.apply(
    beam.withName(name, (r) => {
      build(r).apply(assertDeepEqual(want));
    })
  );
}

runOn("extras", (root) => {
  const ns = (r) => r.apply(beam.create(nums));
  const sumAll = () => beam.groupGlobally().combining((n) => n, sum, "total");

  // One DoFn reads both side inputs, and comes first: the SDK serializes
  // the pipeline built so far, side-input DoFns included, into a DoFn that
  // reads a side input, and its worker takes descriptors of at most 4 MiB.
  // Main and side inputs are in 50 s fixed windows (the SDK wants one
  // windowing for all inputs of a DoFn), and the main input has one element
  // a window: the SDK hands every element of a bundle and window the same
  // generator of an iterable side input, which only the first can read
  // (see the README).
  part(
    root,
    "side inputs",
    (r) => {
      const input = ns(r).apply(beam.assignTimestamps(atSeconds)).apply(beam.windowInto(beam.fixedWindows(50)));
      const primesPC = r
        .apply(beam.withName("primes", beam.create(primes)))
        .apply(beam.withName("primes at p s", beam.assignTimestamps(atSeconds)))
        .apply(beam.withName("primes in 50 s windows", beam.windowInto(beam.fixedWindows(50))));
      return input
        .apply(sumAll())
        .map(totalOf)
        .map(summary, {
          count: beam.singletonSideInput(input.apply(beam.countGlobally())),
          primes: beam.iterableSideInput(primesPC),
          window: beam.windowParam(),
        });
    },
    expected.windows
  );

  part(
    root,
    "combiners per key",
    (r) =>
      ns(r)
        .map(byMod3)
        .apply(
          beam
            .groupBy("m")
            .combining("n", sum, "sum")
            .combining("n", max, "max")
            .combining("n", mean, "mean")
            .combining("n", count, "count")
            .combining("n", beam.binaryCombineFn((a, b) => Math.min(a, b)), "min")
        ),
    expected.perKey
  );

  part(
    root,
    "coGroupBy",
    (r) =>
      beam
        .P({ left: ns(r).map(byMod4), right: r.apply(beam.withName("names", beam.create(names))) })
        .apply(beam.coGroupBy("id"))
        .map(joinSizes),
    expected.joined
  );

  part(
    root,
    "partition and flatten",
    (r) => beam.P(ns(r).apply(beam.partition(half, 2))).apply(beam.flatten()).apply(beam.countGlobally()),
    expected.partitioned
  );

  part(root, "reshuffle", (r) => ns(r).apply(reshuffle()).apply(sumAll()).map(totalOf), expected.reshuffled);

  part(
    root,
    "session windows",
    (r) =>
      r
        .apply(beam.create(events))
        .apply(beam.assignTimestamps(eventTime))
        .apply(beam.windowInto(beam.sessions(10)))
        .apply(beam.groupBy("user").combining("t", count, "n"))
        .map(session, { window: beam.windowParam() }),
    expected.sessions
  );

  part(
    root,
    "sliding windows",
    (r) =>
      r
        .apply(beam.create(nums.slice(0, 60)))
        .apply(beam.assignTimestamps(secondsAt))
        .apply(beam.windowInto(beam.slidingWindows(30, 10)))
        .map(one)
        .apply(beam.groupBy("k").combining("n", count, "n"))
        .map(slidingWindow, { window: beam.windowParam() }),
    expected.sliding
  );
});
