// The real lensd ($LENSD_BINARY, default <repo>/build/server/lensd) on a free loopback port with
// auth on, serving a private repository with the demo model and its tuned lens.
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export const repo = path.resolve(__dirname, "..", "..", "..", "..");
export const binary = process.env.LENSD_BINARY || path.join(repo, "build", "server", "lensd");

export class TestServer {
  address = "";
  readonly tokens: Record<string, string> = {};
  private process?: ChildProcess;
  private readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), "lensd-ts-"));

  async start(): Promise<void> {
    const lines: string[] = [];
    for (const role of ["admin", "read"]) {
      const out = execFileSync(binary, ["token", `--tenant=ts-${role}`, `--role=${role}`]).toString();
      for (const line of out.split("\n")) {
        if (line.startsWith("token: ")) this.tokens[role] = line.slice(7);
        if (line.startsWith("tokens file line: ")) lines.push(line.slice(18));
      }
    }
    fs.writeFileSync(path.join(this.dir, "tokens.txt"), lines.join("\n") + "\n");
    const demo = path.join(repo, "deploy", "models", "kjv-gpt2");
    const model = path.join(this.dir, "repo", "kjv-gpt2");
    fs.mkdirSync(path.join(model, "lenses"), { recursive: true });
    for (const name of fs.readdirSync(demo)) {
      if (name !== "lenses") fs.symlinkSync(path.join(demo, name), path.join(model, name));
    }
    fs.symlinkSync(path.join(demo, "lenses", "tuned"), path.join(model, "lenses", "tuned"));
    const log = fs.openSync(path.join(this.dir, "lensd.log"), "w");
    this.process = spawn(binary, [
      `--model_repository=${path.join(this.dir, "repo")}`, "--models=kjv-gpt2",
      "--lenses=kjv-gpt2/tuned", "--saes=kjv-gpt2/res3-topk", `--tokens_file=${path.join(this.dir, "tokens.txt")}`,
      "--address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
      `--port_file=${path.join(this.dir, "port.json")}`, `--state_dir=${path.join(this.dir, "state")}`,
      "--log_requests=false"], { stdio: ["ignore", "ignore", log] });
    for (let i = 0; i < 600; i++) {
      const portFile = path.join(this.dir, "port.json");
      const text = fs.readFileSync(path.join(this.dir, "lensd.log"), "utf8");
      if (fs.existsSync(portFile) && fs.statSync(portFile).size > 0 && text.includes("serving")) {
        this.address = `127.0.0.1:${JSON.parse(fs.readFileSync(portFile, "utf8")).port}`;
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`lensd did not start:\n${fs.readFileSync(path.join(this.dir, "lensd.log"), "utf8")}`);
  }

  async stop(): Promise<void> {
    if (this.process && this.process.exitCode === null) {
      const exited = new Promise((r) => this.process!.once("exit", r));
      this.process.kill("SIGTERM");
      await exited;
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
