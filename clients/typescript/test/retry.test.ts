// The client against an in-process gRPC server that fails calls on purpose: a call that fails
// UNAVAILABLE is retried and names its model in x-lensd-model metadata (what a balancer routes
// by); SubmitJob is not retried (a second try would queue a second job).
import * as grpc from "@grpc/grpc-js";
import * as assert from "node:assert/strict";
import { test } from "node:test";
import { Client, LensdError } from "../src";
import { DecodeResponse, LensService } from "../src/generated/lensd/v1/lens";
import { SubmitJobRequest, TrainingService } from "../src/generated/lensd/v1/training";

test("UNAVAILABLE is retried, not for SubmitJob, and calls name their model", async () => {
  let decodes = 0;
  let submits = 0;
  const models: string[] = [];
  const unavailable = { code: grpc.status.UNAVAILABLE, details: "a replica went away" };
  const server = new grpc.Server();
  server.addService(LensService as unknown as grpc.ServiceDefinition, {
    decode: (call: grpc.ServerUnaryCall<unknown, DecodeResponse>,
      done: grpc.sendUnaryData<DecodeResponse>) => {
      decodes += 1;
      models.push(...call.metadata.get("x-lensd-model").map(String));
      if (decodes === 1) done(unavailable as grpc.ServiceError);
      else done(null, DecodeResponse.fromPartial({ model: "kjv-copy" }));
    },
  });
  server.addService(TrainingService as unknown as grpc.ServiceDefinition, {
    submitJob: (_call: unknown, done: grpc.sendUnaryData<unknown>) => {
      submits += 1;
      done(unavailable as grpc.ServiceError);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(),
      (error, bound) => (error ? reject(error) : resolve(bound))));
  const client = new Client(`127.0.0.1:${port}`, { token: "", model: "kjv-copy" });
  try {
    const result = await client.decode("In the beginning", { layers: [1] });
    assert.equal(result.response.model, "kjv-copy");
    await assert.rejects(client.submitJob(SubmitJobRequest.fromPartial({ model: "kjv-copy" })),
      (error: unknown) => error instanceof LensdError && error.code === grpc.status.UNAVAILABLE);
  } finally {
    client.close();
    server.forceShutdown();
  }
  assert.equal(decodes, 2, "Decode: one retry");
  assert.equal(submits, 1, "SubmitJob: not retried");
  assert.deepEqual(models, ["kjv-copy", "kjv-copy"]);
});
