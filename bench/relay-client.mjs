// The client side of the stream relay benchmark (bench/edge.mjs, b), run in
// a worker thread so that its event loop is not the upstream's: a chunk's
// delay is then the edge's, not the time the benchmark itself took to get
// around to reading it. Chunks carry their send time on the monotonic clock
// that every thread and process on the machine shares.
import { parentPort, workerData } from "node:worker_threads";
import { stampStream } from "./stamp.mjs";

const { base, key, spec, streams, rounds, warmSpec } = workerData;
await stampStream(base, key, warmSpec);
const all = [];
for (let r = 0; r < rounds; r++) {
  const runs = await Promise.all(Array.from({ length: streams }, () => stampStream(base, key, spec)));
  all.push(...runs.flat());
}
parentPort.postMessage(all);
