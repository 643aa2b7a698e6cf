// Chunks stamped with their send time, for the stream relay and memory
// benchmarks (bench/edge.mjs) and their client thread (relay-client.mjs).

/** The monotonic clock, in ms, that every thread and process on the
 * machine shares (CLOCK_MONOTONIC). */
export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** Stream one answer from the stamping upstream through `base`; return the
 * per-chunk relay delays (ms). `onBytes` sees every chunk's size. */
export async function stampStream(base, key, spec, { onBytes } = {}) {
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: `STAMP ${spec}` }], stream: true }),
  });
  if (res.status !== 200) throw new Error(`stream status ${res.status}: ${await res.text()}`);
  const delays = [];
  const decoder = new TextDecoder();
  let buf = "";
  for await (const bytes of res.body) {
    const now = nowMs();
    onBytes?.(bytes.length);
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
