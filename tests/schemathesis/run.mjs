// Schemathesis against the edge's own /openapi.json, with the built worker
// in workerd (or INFERGATE_TARGET=spin) in front of the local upstream.
//
// The upstream answers at once and never faults, so every 5xx is the
// gateway's own. Two passes: the API routes with a seeded API key, and the
// admin routes with the admin token. Every check schemathesis has runs,
// except the two that judge semantic validation against the schema
// (`positive_data_acceptance`, `negative_data_rejection`): the gateway
// checks more than a schema can say (model ids, context windows, tool
// names), and forwards fields it does not model, by design.
//
//   node tests/schemathesis/run.mjs            (scripts/schemathesis.sh sets it up)
//   SCHEMATHESIS_MAX_EXAMPLES=200 ...          more cases per operation
//   SCHEMATHESIS_ARGS="--seed 1" ...           extra schemathesis flags
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startStack, keyRecord, ADMIN_TOKEN } from "../e2e/harness.mjs";

const BIN = process.env.SCHEMATHESIS_BIN || "schemathesis";
const MAX_EXAMPLES = process.env.SCHEMATHESIS_MAX_EXAMPLES || "100";
const KEY = "ig-schemathesis-key-0123456789";

const stack = await startStack({
  // No delays and more than enough time: upstream faults are not under test.
  upstream: { delayMs: 0, chunks: 3 },
  config: { limits: { max_body_bytes: 64 * 1024, first_byte_timeout_ms: 10000, stall_timeout_ms: 10000 } },
});
await stack.seedKey(KEY, keyRecord("key_schemathesis", { tenant: "schemathesis" }));
const work = mkdtempSync(path.join(os.tmpdir(), "infergate-schemathesis-"));

function run(name, args) {
  const full = [
    "run",
    `${stack.base}/openapi.json`,
    "--url",
    stack.base,
    "--checks",
    "all",
    "--exclude-checks",
    "positive_data_acceptance,negative_data_rejection,use_after_free",
    "--max-examples",
    MAX_EXAMPLES,
    // One worker: hypothesis' example extraction is not thread-safe
    // (sporadic FlakyFailure in its lambda-source cache with two).
    "--workers",
    "1",
    "--generation-database",
    "none",
    "--generation-with-security-parameters",
    "false",
    "--request-timeout",
    "30",
    "--no-color",
    ...args,
    ...(process.env.SCHEMATHESIS_ARGS ? process.env.SCHEMATHESIS_ARGS.split(/\s+/).filter(Boolean) : []),
  ];
  console.log(`\n== schemathesis: ${name}`);
  return new Promise((resolve) => {
    const child = spawn(BIN, full, { cwd: work, stdio: "inherit" });
    child.on("error", (e) => {
      console.error(`cannot run ${BIN}: ${e.message} (scripts/schemathesis.sh installs it)`);
      resolve(127);
    });
    child.on("exit", (code) => resolve(code ?? 1));
  });
}

let failed = 0;
try {
  const api = await run("API routes (API key)", ["--exclude-tag", "Admin", "-H", `Authorization: Bearer ${KEY}`]);
  const adm = await run("admin routes (admin token)", ["--include-tag", "Admin", "-H", `Authorization: Bearer ${ADMIN_TOKEN}`]);
  failed = [api, adm].filter((c) => c !== 0).length;
  const panics = stack.logs().match(/panicked at/g)?.length ?? 0;
  if (panics) {
    console.error(`the worker panicked ${panics} time(s):\n${stack.logs()}`);
    failed++;
  }
  console.log(failed ? `\nschemathesis: ${failed} pass(es) failed` : "\nschemathesis: no failures");
} finally {
  await stack.close();
  rmSync(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
