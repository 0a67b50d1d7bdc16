// The TypeScript client against a live lensd (server.ts): Decode agrees with lensctl's JSON for
// the same prompt, node attribution's token-trace rows agree with lensctl's, Generate streams as an async iterator, auth failures and deadlines come back as
// LensdError with their codes, and the README example runs.
import * as grpc from "@grpc/grpc-js";
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { ablateHeads, Client, LensdError, patchingResultOf, steer } from "../src";
import { PatchingSite } from "../src/generated/lensd/v1/patching";
import { SignConvention } from "../src/generated/lensd/v1/attribution";
import { JobState } from "../src/generated/lensd/v1/training";
import { repo, TestServer } from "./server";

const prompt = "And God said, Let there be light: and there was";
const server = new TestServer();
before(() => server.start());
after(() => server.stop());

function client(role: string): Client {
  return new Client(server.address, { token: server.tokens[role] ?? "" });
}

test("decode agrees with lensctl", async () => {
  const c = client("read");
  const result = await c.decode(prompt, { lens: "tuned", topK: 3 });
  c.close();
  assert.deepEqual(result.rowLabels(), ["0", "1", "2", "3", "4", "5", "output"]);
  const lensctl = process.env.LENSCTL_BINARY || path.join(repo, "build", "clients", "cli", "lensctl");
  const theirs = JSON.parse(execFileSync(lensctl, ["decode", "--json", "--lens", "tuned", "--top_k", "3", prompt],
    { env: { ...process.env, LENSD_ADDRESS: server.address, LENSD_TOKEN: server.tokens.read } }).toString());
  const ours = result.response.rows.map((r) => r.cells.map((cell) => cell.top.map((t) => String(t.id))));
  const expected = theirs.rows.map((r: any) => r.cells.map((cell: any) => cell.top.map((t: any) => String(t.id))));
  assert.deepEqual(ours, expected);
});

test("node attribution has token-trace rows and agrees with lensctl", async () => {
  const c = client("read");
  const result = await c.nodeAttribution(prompt, {
    saes: ["res3-topk"], topN: 10, sign: SignConvention.SIGN_CONVENTION_TOKEN_TRACE,
  });
  const rows = result.rows();
  assert.equal(rows.length, 10);
  for (const r of rows) {
    assert.equal(r.module_name, "blocks.3.hook_resid_pre");
    if (r.act_type === "feature") assert.ok(Math.abs(r.ie - r.value * r.grad) <= 1e-4 * (1 + Math.abs(r.ie)));
  }
  const lensctl = process.env.LENSCTL_BINARY || path.join(repo, "build", "clients", "cli", "lensctl");
  const theirs = JSON.parse(execFileSync(lensctl, ["attribute", "--json", "--saes", "res3-topk", "--top_n", "10",
    "--token_trace_sign", prompt],
  { env: { ...process.env, LENSD_ADDRESS: server.address, LENSD_TOKEN: server.tokens.read } }).toString());
  assert.deepEqual(rows.map((r) => r.effect), theirs.nodes.map((n: any) => Math.fround(n.effect)));
  const features = await c.encodeSae(prompt, ["res3-topk"], 4);
  assert.equal(features.saes[0].offsets.length, features.tokens.length + 1);
  await assert.rejects(c.nodeAttribution(prompt, { saes: ["nope"] }),
    (e: LensdError) => e.code === grpc.status.NOT_FOUND && e.details.includes("saes"));
  c.close();
});

test("generate streams tokens as an async iterator", async () => {
  const c = client("read");
  const steps: number[] = [];
  let last;
  for await (const token of c.generate(prompt, { lens: "tuned", layer: 3, greedy: true, maxNewTokens: 6 })) {
    steps.push(token.step);
    last = token;
  }
  c.close();
  assert.deepEqual(steps, [0, 1, 2, 3, 4, 5]);
  assert.equal(last?.finished, true);
  assert.equal(last?.finishReason, "length");
});

test("auth failures and bad fields carry their codes", async () => {
  const anonymous = client("none");
  await assert.rejects(anonymous.decode(prompt), (e: LensdError) => e.code === grpc.status.UNAUTHENTICATED);
  anonymous.close();
  const reader = client("read");
  await assert.rejects(reader.decode(prompt, { layers: [9] }),
    (e: LensdError) => e.code === grpc.status.INVALID_ARGUMENT && e.details.includes("layers") && e.method === "Decode");
  reader.close();
});

test("a deadline stops a generation", async () => {
  const c = client("read");
  await assert.rejects(async () => {
    for await (const _ of c.generate(prompt, { maxNewTokens: 240, timeoutMs: 50 })) { /* drain */ }
  }, (e: LensdError) => e.code === grpc.status.DEADLINE_EXCEEDED);
  c.close();
});

test("the README example runs", () => {
  const out = execFileSync(process.execPath, [path.join(__dirname, "..", "example", "example.js"), "tuned", prompt],
    { env: { ...process.env, LENSD_ADDRESS: server.address, LENSD_TOKEN: server.tokens.read } }).toString();
  const lines = out.trim().split("\n");
  assert.equal(lines.length, 8, out);
  assert.ok(lines[6].startsWith("output"), out);
  assert.ok(lines[7].startsWith(prompt), out);
});

test("steering changes the output; a bad head is refused; patching returns its grid", async () => {
  const c = client("read");
  const plain = await c.decode(prompt, { layers: [0], topK: 1 });
  const vector = Array.from({ length: 128 }, (_, i) => (i % 7) - 3);
  const steered = await c.decode(prompt, {
    layers: [0], topK: 1, interventions: [steer("blocks.2.hook_resid_pre", vector, 8)],
  });
  const before = plain.response.rows[1].cells.map((cell) => cell.top[0].prob);
  const after = steered.response.rows[1].cells.map((cell) => cell.top[0].prob);
  assert.ok(before.some((p, j) => Math.abs(p - after[j]) > 1e-3), "steering changed nothing");
  await assert.rejects(c.decode(prompt, { interventions: [ablateHeads(0, [9])] }),
    (e: LensdError) => e.code === grpc.status.INVALID_ARGUMENT && e.details.includes("interventions[0].heads"));
  let progress = 0;
  const result = await c.activationPatching(prompt, prompt, {
    sweeps: [{ site: PatchingSite.PATCHING_SITE_Z, allPositions: true }], progress: () => { progress++; },
  });
  c.close();
  assert.equal(result.grids[0].name, "z_all_pos");
  assert.deepEqual(result.grids[0].shape, [6, 4]);
  assert.ok(progress > 0);
  for (const m of result.grids[0].metric) assert.ok(Math.abs(m - result.cleanMetric) < 1e-4);
});

test("a patching job gives the grids of the call", async () => {
  const corrupted = prompt.replace("God", "Moses");
  const options = { sweeps: [{ site: PatchingSite.PATCHING_SITE_RESID_PRE, allPositions: false }] };
  const reader = client("read");
  const streamed = await reader.activationPatching(prompt, corrupted, options);
  reader.close();
  const c = client("admin");
  let job = await c.submitPatching(prompt, corrupted, options);
  for await (const update of c.watchJob(job.id)) job = update;
  c.close();
  assert.equal(job.state, JobState.JOB_STATE_SUCCEEDED, job.reason);
  assert.equal(job.step, streamed.patchedRuns);
  const result = patchingResultOf(job);
  assert.deepEqual(result.grids[0].shape, streamed.grids[0].shape);
  result.grids[0].metric.forEach((m, i) => assert.ok(Math.abs(m - streamed.grids[0].metric[i]) < 1e-6, `cell ${i}`));
});
