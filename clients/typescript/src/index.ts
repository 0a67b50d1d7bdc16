// The TypeScript client of lensd: promise-based calls, async iterators for streams, the token and
// client version on every call, deadlines, and errors as LensdError with the gRPC code. The
// generated message types and grpc-js clients are re-exported as `pb`.
import * as grpc from "@grpc/grpc-js";
import { DecodeRequest, DecodeResponse, GenerateRequest, GenerateResponse, LensClient, Statistic } from "./generated/lensd/v1/lens";
import { ModelInfo, ModelsClient } from "./generated/lensd/v1/models";
import { Job, SubmitJobRequest, TrainingClient } from "./generated/lensd/v1/training";
import { Input, Metric } from "./generated/lensd/v1/types";
import { Intervention } from "./generated/lensd/v1/interventions";
import {
  ActivationPatchingRequest, ActivationPatchingResponse, ActivationPatchingResult, PatchingDirection,
  PatchingSweep,
} from "./generated/lensd/v1/patching";
import {
  AttributionClient, Baseline, EncodeSaeRequest, EncodeSaeResponse, ErrorNodes, Method,
  NodeAttributionRequest, NodeAttributionResponse, SignConvention,
} from "./generated/lensd/v1/attribution";

export * as attribution from "./generated/lensd/v1/attribution";
export * as types from "./generated/lensd/v1/types";
export * as lens from "./generated/lensd/v1/lens";
export * as models from "./generated/lensd/v1/models";
export * as training from "./generated/lensd/v1/training";
export * as interventions from "./generated/lensd/v1/interventions";
export * as patching from "./generated/lensd/v1/patching";

/** Sent to the server on every call (x-lensd-client-version). */
export const VERSION = "0.1.0";

/** Calls that failed UNAVAILABLE (a server restarting, or lost behind a balancer) are retried up
 * to 5 times with backoff, every method but SubmitJob, which would queue a second job; a stream
 * only before its first message. */
const RETRY_POLICY = JSON.stringify({
  methodConfig: [{
    name: [{ service: "lensd.v1.Lens" }, { service: "lensd.v1.Models" },
      { service: "lensd.v1.Attribution" },
      ...["GetJob", "ListJobs", "CancelJob", "WatchJob"].map(
        (method) => ({ service: "lensd.v1.Training", method }))],
    retryPolicy: {
      maxAttempts: 5, initialBackoff: "0.1s", maxBackoff: "2s", backoffMultiplier: 2,
      retryableStatusCodes: ["UNAVAILABLE"],
    },
  }],
});

/** A failed call: the gRPC status code and the server's message (naming the field). */
export class LensdError extends Error {
  constructor(readonly method: string, readonly code: grpc.status, readonly details: string) {
    super(`${method}: ${grpc.status[code]}: ${details}`);
    this.name = "LensdError";
  }
}

function wrap(method: string, error: unknown): LensdError {
  const e = error as Partial<grpc.ServiceError>;
  return new LensdError(method, e.code ?? grpc.status.UNKNOWN, e.details ?? String(error));
}

export interface ClientOptions {
  /** Bearer token; default $LENSD_TOKEN. */
  token?: string;
  /** TLS: true for the system's roots, or credentials of your own. */
  tls?: boolean | grpc.ChannelCredentials;
  /** The model calls use when they name none; default kjv-gpt2. */
  model?: string;
  /** Deadline of each call (streams: the whole stream) in ms; default 60000. */
  timeoutMs?: number;
}

export interface DecodeOptions {
  model?: string;
  lens?: string;
  layers?: number[];
  positions?: number[];
  topK?: number;
  statistics?: Statistic[];
  /** Edits applied while the model runs (steer, ablate, patch, ...). */
  interventions?: Intervention[];
  timeoutMs?: number;
}

export interface GenerateOptions {
  model?: string;
  lens?: string;
  /** Read-out layer; undefined: the model's own output. */
  layer?: number;
  maxNewTokens?: number;
  greedy?: boolean;
  seed?: number;
  /** Edits applied at every step; alsoUnedited adds the continuation without them. */
  interventions?: Intervention[];
  alsoUnedited?: boolean;
  timeoutMs?: number;
}

export interface PatchingOptions {
  model?: string;
  /** Default: the loss of the last token's prediction. */
  metric?: Metric;
  /** Default: resid_pre by position. */
  sweeps?: PatchingSweep[];
  noising?: boolean;
  layers?: number[];
  positions?: number[];
  /** Called after each batched pass of patched runs. */
  progress?: (done: number, total: number) => void;
  timeoutMs?: number;
}

/** The grids of a finished patching job (its resultJson, proto3's JSON mapping). */
export function patchingResultOf(job: Job): ActivationPatchingResult {
  if (job.kind !== "patch") throw new Error(`job ${job.id} is a "${job.kind}" job, not a patching one`);
  if (!job.resultJson) throw new Error(`job ${job.id} has no result yet (state ${job.state}: ${job.reason})`);
  return ActivationPatchingResult.fromJSON(JSON.parse(job.resultJson));
}

/** A [len] float32 tensor (a steering vector, a value to set). */
export function float32s(values: number[]) {
  const data = Buffer.from(new Float32Array(values).buffer);
  return { dtype: "float32", shape: [values.length], data };
}

/** Adds coefficient x vector at a hook point (every position; in generate, every step). */
export function steer(hookPoint: string, vector: number[], coefficient = 1): Intervention {
  return Intervention.fromPartial({
    hookPoint, operation: { $case: "add", value: { vector: float32s(vector), coefficient } },
  });
}

/** Zero-ablates a hook point (at `positions`; default all). */
export function ablate(hookPoint: string, positions: number[] = []): Intervention {
  return Intervention.fromPartial({ hookPoint, positions, operation: { $case: "zero", value: true } });
}

/** Zero-ablates heads of a layer (their blocks.<layer>.attn.hook_z). */
export function ablateHeads(layer: number, heads: number[]): Intervention {
  return Intervention.fromPartial({
    hookPoint: `blocks.${layer}.attn.hook_z`, heads, operation: { $case: "zero", value: true },
  });
}

/** The hook point's value on `source` (activation patching; positions align). */
export function patch(hookPoint: string, source: string | number[], positions: number[] = []): Intervention {
  return Intervention.fromPartial({ hookPoint, positions, operation: { $case: "patch", value: input(source) } });
}

/** Clamps one feature of a loaded SAE at its hook point (error term kept). */
export function clampSae(sae: string, feature: number, value: number): Intervention {
  return Intervention.fromPartial({ operation: { $case: "saeClamp", value: { sae, feature, value } } });
}

export interface NodeAttributionOptions {
  model?: string;
  /** SAE names; default every loaded SAE. */
  saes?: string[];
  /** Default: the loss of the last token's prediction. */
  metric?: Metric;
  baseline?: Baseline;
  patch?: string | number[];
  reference?: (string | number[])[];
  method?: Method;
  igSteps?: number;
  errorNodes?: ErrorNodes;
  sign?: SignConvention;
  topN?: number;
  minAbsEffect?: number;
  timeoutMs?: number;
}

/** One node with token-trace's DataFrame columns (ie = (value - baseline) x grad). */
export interface NodeRow {
  sae: string; module_name: string; layer: number; module_type: string; token_idx: number;
  token_str: string; act_type: string; feature: number; value: number; baseline: number;
  grad: number; effect: number; ie: number;
}

/** A NodeAttribution response with its nodes as token-trace rows. */
export class NodeAttributionResult {
  constructor(readonly response: NodeAttributionResponse, readonly sign: SignConvention) {}

  rows(): NodeRow[] {
    const flip = this.sign === SignConvention.SIGN_CONVENTION_TOKEN_TRACE ? 1 : -1;
    return this.response.nodes.map((n) => ({
      sae: n.sae, module_name: n.moduleName, layer: n.layer, module_type: n.moduleType,
      token_idx: n.tokenIdx, token_str: n.tokenStr, act_type: n.actType, feature: n.feature,
      value: n.value, baseline: n.baseline, grad: n.grad, effect: n.effect, ie: flip * n.effect,
    }));
  }
}

/** A Decode response with helpers for its grid of rows (layers, then the output) by positions. */
export class DecodeResult {
  constructor(readonly response: DecodeResponse) {}

  /** "0", "1", ..., "output". */
  rowLabels(): string[] {
    return this.response.rows.map((r) => (r.isOutput ? "output" : String(r.layer)));
  }

  /** Row i's most likely token at each decoded position. */
  top1(i: number): string[] {
    return this.response.rows[i].cells.map((c) => c.top[0]?.text ?? "");
  }
}

/** A prompt: text the server tokenizes, or token ids. */
export function input(prompt: string | number[]): Input {
  return typeof prompt === "string"
    ? { kind: { $case: "text", value: prompt }, addSpecialTokens: false }
    : { kind: { $case: "tokens", value: { ids: prompt } }, addSpecialTokens: false };
}

export class Client {
  readonly lens: LensClient;
  readonly models: ModelsClient;
  readonly training: TrainingClient;
  readonly attribution: AttributionClient;
  private readonly token: string;
  private readonly model: string;
  private readonly timeoutMs: number;

  /** Connects (lazily) to address (default $LENSD_ADDRESS, else 127.0.0.1:50051). */
  constructor(address?: string, options: ClientOptions = {}) {
    const target = address || process.env.LENSD_ADDRESS || "127.0.0.1:50051";
    this.token = options.token ?? process.env.LENSD_TOKEN ?? "";
    this.model = options.model ?? "kjv-gpt2";
    this.timeoutMs = options.timeoutMs ?? 60_000;
    const credentials = options.tls === true ? grpc.credentials.createSsl()
      : options.tls ? options.tls : grpc.credentials.createInsecure();
    const channelOptions = {
      "grpc.max_receive_message_length": 64 << 20,
      "grpc.service_config": RETRY_POLICY,
    };
    this.lens = new LensClient(target, credentials, channelOptions);
    this.models = new ModelsClient(target, credentials, channelOptions);
    this.training = new TrainingClient(target, credentials, channelOptions);
    this.attribution = new AttributionClient(target, credentials, channelOptions);
  }

  close(): void {
    this.lens.close();
    this.models.close();
    this.training.close();
    this.attribution.close();
  }

  /** The version, the token and the call's model (x-lensd-model: an L7 balancer in front of
   * several servers routes by it, deploy/haproxy). */
  private metadata(model?: string): grpc.Metadata {
    const m = new grpc.Metadata();
    m.set("x-lensd-client-version", VERSION);
    if (model) m.set("x-lensd-model", model);
    if (this.token) m.set("authorization", `Bearer ${this.token}`);
    return m;
  }

  private options(timeoutMs?: number): Partial<grpc.CallOptions> {
    return { deadline: new Date(Date.now() + (timeoutMs ?? this.timeoutMs)) };
  }

  private unary<Req, Res>(method: string, call: (req: Req, md: grpc.Metadata,
    options: Partial<grpc.CallOptions>, cb: (e: grpc.ServiceError | null, r: Res) => void) => unknown,
  request: Req, timeoutMs?: number): Promise<Res> {
    return new Promise((resolve, reject) => {
      const model = (request as { model?: unknown }).model;
      call(request, this.metadata(typeof model === "string" ? model : undefined),
        this.options(timeoutMs), (error, response) => {
          if (error) reject(wrap(method, error));
          else resolve(response);
        });
    });
  }

  private async *stream<T>(method: string, open: () => grpc.ClientReadableStream<T>): AsyncGenerator<T> {
    const call = open();
    try {
      for await (const message of call) yield message as T;
    } catch (error) {
      throw wrap(method, error);
    } finally {
      call.cancel();
    }
  }

  /** The repository's models, loaded or not. */
  async listModels(): Promise<ModelInfo[]> {
    const r = await this.unary("ListModels", this.models.listModels.bind(this.models), {});
    return r.models;
  }

  /** Per-layer decoding of a prompt through a lens. */
  async decode(prompt: string | number[], o: DecodeOptions = {}): Promise<DecodeResult> {
    const request = DecodeRequest.fromPartial({
      model: o.model ?? this.model, input: input(prompt), lens: o.lens ?? "",
      layers: o.layers ?? [], positions: o.positions ?? [], topK: o.topK,
      statistics: o.statistics ?? [], interventions: o.interventions ?? [],
    });
    return new DecodeResult(await this.unary("Decode", this.lens.decode.bind(this.lens), request, o.timeoutMs));
  }

  /** Tokens sampled from a lens, as they are produced. */
  generate(prompt: string | number[], o: GenerateOptions = {}): AsyncGenerator<GenerateResponse> {
    const request = GenerateRequest.fromPartial({
      model: o.model ?? this.model, input: input(prompt), lens: o.lens ?? "", layer: o.layer,
      maxNewTokens: o.maxNewTokens, greedy: o.greedy ?? false, seed: o.seed ?? 0,
      interventions: o.interventions ?? [], alsoUnedited: o.alsoUnedited ?? false,
    });
    return this.stream("Generate",
      () => this.lens.generate(request, this.metadata(request.model), this.options(o.timeoutMs)));
  }

  private patchingRequest(clean: string | number[], corrupted: string | number[],
    o: PatchingOptions): ActivationPatchingRequest {
    return ActivationPatchingRequest.fromPartial({
      model: o.model ?? this.model, clean: input(clean), corrupted: input(corrupted),
      metric: o.metric, sweeps: o.sweeps ?? [{}], layers: o.layers ?? [],
      positions: o.positions ?? [],
      direction: o.noising ? PatchingDirection.PATCHING_DIRECTION_NOISING
        : PatchingDirection.PATCHING_DIRECTION_DENOISING,
    });
  }

  /** The sweeps as a durable job (train role): it outlives the connection and a server restart
   * (it starts over); its steps count patched runs. Follow it with watchJob and read its grids
   * with patchingResultOf. */
  submitPatching(clean: string | number[], corrupted: string | number[],
    o: PatchingOptions = {}): Promise<Job> {
    const sweep = this.patchingRequest(clean, corrupted, o);
    const request = SubmitJobRequest.fromPartial({
      model: sweep.model, kind: { $case: "activationPatching", value: { ...sweep, model: "" } },
    });
    return this.submitJob(request);
  }

  /** Activation patching sweeps on the server (TransformerLens's patching module): the grids. */
  async activationPatching(clean: string | number[], corrupted: string | number[],
    o: PatchingOptions = {}): Promise<ActivationPatchingResult> {
    const request = this.patchingRequest(clean, corrupted, o);
    const messages = this.stream<ActivationPatchingResponse>("ActivationPatching",
      () => this.lens.activationPatching(request, this.metadata(request.model),
        this.options(o.timeoutMs)));
    for await (const m of messages) {
      if (m.kind?.$case === "progress") o.progress?.(m.kind.value.done, m.kind.value.total);
      if (m.kind?.$case === "result") return m.kind.value;
    }
    throw new LensdError("ActivationPatching", grpc.status.INTERNAL, "the stream ended without a result");
  }

  /** Sparse feature activations of the SAEs (default every loaded one) per position. */
  encodeSae(prompt: string | number[], saes: string[] = [], topK = 16, timeoutMs?: number): Promise<EncodeSaeResponse> {
    const request = EncodeSaeRequest.fromPartial({ model: this.model, input: input(prompt), saes, topK });
    return this.unary("EncodeSae", this.attribution.encodeSae.bind(this.attribution), request, timeoutMs);
  }

  /** Effects of every SAE feature and error node on a metric, largest |effect| first. */
  async nodeAttribution(prompt: string | number[], o: NodeAttributionOptions = {}): Promise<NodeAttributionResult> {
    const sign = o.sign ?? SignConvention.SIGN_CONVENTION_PATCH_EFFECT;
    const request = NodeAttributionRequest.fromPartial({
      model: o.model ?? this.model, input: input(prompt), saes: o.saes ?? [], metric: o.metric,
      baseline: o.baseline, patch: o.patch === undefined ? undefined : input(o.patch),
      reference: (o.reference ?? []).map(input), method: o.method, igSteps: o.igSteps,
      errorNodes: o.errorNodes, signConvention: sign, topN: o.topN ?? 0,
      minAbsEffect: o.minAbsEffect ?? 0,
    });
    const response = await this.unary("NodeAttribution",
      this.attribution.nodeAttribution.bind(this.attribution), request, o.timeoutMs);
    return new NodeAttributionResult(response, sign);
  }

  /** Queues a training or evaluation job (train role). */
  submitJob(request: SubmitJobRequest): Promise<Job> {
    return this.unary("SubmitJob", this.training.submitJob.bind(this.training), request);
  }

  /** A job's state on every change until it finishes. */
  watchJob(id: string): AsyncGenerator<Job> {
    return this.stream("WatchJob", () => this.training.watchJob({ id }, this.metadata(),
      { deadline: new Date(Date.now() + 365 * 24 * 3600 * 1000) }));
  }
}
