// The client side of the stream relay benchmark (bench/edge.mjs, b), run in
// a worker thread so that its event loop is not the upstream's: a chunk's
// delay is then the edge's, not the time the benchmark itself took to get
// around to reading it. Chunks carry their send time on the monotonic clock
// that every thread and process on the machine shares.
import { parentPort, workerData } from "node:worker_threads";

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const { base, key, spec, streams, rounds, warmSpec } = workerData;

async function stampStream(s) {
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: `STAMP ${s}` }], stream: true }),
  });
  if (res.status !== 200) throw new Error(`stream status ${res.status}: ${await res.text()}`);
  const delays = [];
  const decoder = new TextDecoder();
  let buf = "";
  for await (const bytes of res.body) {
    const now = nowMs();
    buf += decoder.decode(bytes, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const m = /"content":"@([\d.]+)\|/.exec(frame);
      if (m) delays.push(now - Number(m[1]));
    }
  }
  return delays;
}

await stampStream(warmSpec);
const all = [];
for (let r = 0; r < rounds; r++) {
  const runs = await Promise.all(Array.from({ length: streams }, () => stampStream(spec)));
  all.push(...runs.flat());
}
parentPort.postMessage(all);
