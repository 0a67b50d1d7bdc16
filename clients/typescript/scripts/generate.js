// Generates src/generated/ from ../../proto with protoc and ts-proto (grpc-js clients, typed
// messages). Run by `npm run build`; the output is not committed.
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const here = path.resolve(__dirname, "..");
const proto = path.resolve(here, "..", "..", "proto");
const out = path.join(here, "src", "generated");
fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(out, { recursive: true });
const plugin = path.join(here, "node_modules", ".bin", "protoc-gen-ts_proto");
const files = fs.readdirSync(path.join(proto, "lensd", "v1"))
  .filter((f) => f.endsWith(".proto")).map((f) => path.join("lensd", "v1", f));
execFileSync("protoc", [
  `--plugin=protoc-gen-ts_proto=${plugin}`, `-I${proto}`, `--ts_proto_out=${out}`,
  "--ts_proto_opt=outputServices=grpc-js,esModuleInterop=true,forceLong=number,oneof=unions-value,useOptionals=messages",
  ...files,
], { stdio: "inherit" });
