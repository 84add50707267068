// Windowed count: the numbers 0..999, number i at i seconds, in 100 s fixed
// windows, counted per key and window twice (the SDK's groupBy().combining
// with combiners.count, and a GroupByKey on the SDK's own key coder). Keys
// are blocks of 37 numbers mod 3, so the counts differ from window to
// window; each is checked exactly against counts made here.
"use strict";
const beam = require("apache-beam");
const { assertDeepEqual } = require("apache-beam/testing/assert");
const { groupByKey } = require("apache-beam/transforms/internal");
const { count } = require("apache-beam/transforms/combiners");
const { runOn } = require("./lib");

const N = 1000;
const WINDOW = 100; // seconds
function keyOf(n) {
  return "k" + (Math.floor(n / 37) % 3);
}
const counts = new Map(); // "window start,key" -> count
for (let n = 0; n < N; n++) {
  const k = `${Math.floor(n / WINDOW) * WINDOW},${keyOf(n)}`;
  counts.set(k, (counts.get(k) || 0) + 1);
}
const expected = [...counts].map(([k, c]) => {
  const [start, key] = k.split(",");
  return { key, start: Number(start), count: c };
});
if (process.argv.includes("--break")) expected[0].count++; // proves a wrong result fails the job

// The timestamp is built from the element's own (a Long) so that no Long
// class need be serialized: number n is at n seconds.
function atSeconds(n, ts) {
  return ts.subtract(ts).add(n * 1000);
}
function keyed(n) {
  return { key: "k" + (Math.floor(n / 37) % 3), value: n };
}
function withWindow(e, ctx) {
  return { key: e.key, start: ctx.window.lookup().start.toNumber() / 1000, count: e.count };
}
function countValues(kv) {
  let n = 0;
  for (const _ of kv.value) n++;
  return { key: kv.key, count: n };
}

runOn("windowed", (root) => {
  const windowed = root
    .apply(beam.create(Array.from({ length: N }, (_, i) => i)))
    .apply(beam.assignTimestamps(atSeconds))
    .apply(beam.windowInto(beam.fixedWindows(WINDOW)))
    .map(keyed);
  windowed.apply(
    beam.withName("combining", (pc) =>
      pc
        .apply(beam.groupBy("key").combining("value", count, "count"))
        .map(withWindow, { window: beam.windowParam() })
        .apply(assertDeepEqual(expected))
    )
  );
  windowed.apply(
    beam.withName("groupByKey", (pc) =>
      pc
        .apply(groupByKey())
        .map(countValues)
        .map(withWindow, { window: beam.windowParam() })
        .apply(assertDeepEqual(expected))
    )
  );
});
