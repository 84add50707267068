// Word count: 1,000 words, (word, 1), GroupByKey (whose key coder is the
// SDK's own beam:coder:genericobjectjs:v1, opaque to weir), sum; and the
// SDK's countPerElement. Both are checked against counts made here.
"use strict";
const beam = require("apache-beam");
const { assertDeepEqual } = require("apache-beam/testing/assert");
const { groupByKey } = require("apache-beam/transforms/internal");
const { runOn } = require("./lib");

const VOCAB = ["weir", "beam", "river", "stream", "salmon", "ladder", "flow", "water", "stone", "gate", "pool"];
// Uneven counts: word i is VOCAB[(i*i + 3i) mod 11].
const words = Array.from({ length: 1000 }, (_, i) => VOCAB[(i * i + 3 * i) % VOCAB.length]);
const counts = new Map();
for (const w of words) counts.set(w, (counts.get(w) || 0) + 1);
const sums = [...counts].map(([word, count]) => ({ word, count }));
const perElement = [...counts].map(([element, count]) => ({ element, count }));
if (process.argv.includes("--break")) sums[0].count++; // proves a wrong result fails the job

// Functions given to map are named (the SDK names transforms after them).
function toKV(w) {
  return { key: w, value: 1 };
}
function sumCounts(kv) {
  let n = 0;
  for (const v of kv.value) n += v;
  return { word: kv.key, count: n };
}

runOn("wordcount", (root) => {
  const ws = root.apply(beam.create(words));
  ws.map(toKV).apply(groupByKey()).map(sumCounts).apply(assertDeepEqual(sums));
  ws.apply(beam.countPerElement()).apply(assertDeepEqual(perElement));
});
