"""The synchronous client: one channel, the token and client version on every call, deadlines,
retries of UNAVAILABLE with exponential backoff, and errors raised as LensdError."""
import os
import time
from typing import Dict, Iterator, List, Optional, Sequence

import grpc

import lensd
from lensd import attribution, messages, patching, results
from lensd.errors import from_rpc_error
from lensd.messages import Data, Prompt
from lensd.v1 import attribution_pb2_grpc, lens_pb2_grpc, models_pb2, models_pb2_grpc
from lensd.v1 import training_pb2, training_pb2_grpc, types_pb2

class Client:
    """A connection to a lensd server.

    Args:
        address: host:port; default $LENSD_ADDRESS, else 127.0.0.1:50051.
        token: bearer token; default $LENSD_TOKEN (none: only a loopback server without auth).
        tls: use TLS (root_certificates: PEM bytes of the CA; default the system's).
        timeout: default deadline of each call, in seconds (streams: of the whole stream).
        retries: how many times a call that failed with UNAVAILABLE is retried, with exponential
            backoff from `backoff` seconds.
        model: the model calls use when they name none.
    """

    def __init__(self, address: Optional[str] = None, token: Optional[str] = None,
                 tls: bool = False, root_certificates: Optional[bytes] = None,
                 timeout: float = 60.0, retries: int = 3, backoff: float = 0.2,
                 model: str = "kjv-gpt2"):
        self.address = address or os.environ.get("LENSD_ADDRESS") or "127.0.0.1:50051"
        self._token = token if token is not None else os.environ.get("LENSD_TOKEN", "")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.model = model
        options = [("grpc.max_receive_message_length", 64 << 20)]
        if tls:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(self.address, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(self.address, options=options)
        self._models = models_pb2_grpc.ModelsStub(self._channel)
        self._lens = lens_pb2_grpc.LensStub(self._channel)
        self._training = training_pb2_grpc.TrainingStub(self._channel)
        self._attribution = attribution_pb2_grpc.AttributionStub(self._channel)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- plumbing --------------------------------------------------------------------------------

    def _metadata(self, request=None):
        """The version, the token and, for a call that names a model, x-lensd-model: an L7
        balancer in front of several servers routes by it (deploy/haproxy)."""
        metadata = [("x-lensd-client-version", lensd.__version__)]
        model = getattr(request, "model", "") if request is not None else ""
        if model:
            metadata.append(("x-lensd-model", model))
        if self._token:
            metadata.append(("authorization", f"Bearer {self._token}"))
        return metadata

    def _unary(self, method, request, name: str, timeout: Optional[float] = None,
               retry: bool = True):
        """One call; UNAVAILABLE is retried unless `retry` is off (a call that is not
        idempotent: SubmitJob would queue a second job)."""
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=timeout or self.timeout,
                              metadata=self._metadata(request))
            except grpc.RpcError as error:
                if (error.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.retries
                        or not retry):
                    raise from_rpc_error(error, name) from None
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _stream(self, method, request, name: str, timeout: Optional[float] = None,
                resumable: bool = False):
        """Yields a server stream's messages; UNAVAILABLE before the first message is retried,
        and at any point for a `resumable` stream (one whose every message is the whole state,
        as WatchJob's: opened again, through a balancer on another server, it goes on)."""
        delay = self.backoff
        for attempt in range(self.retries + 1):
            call = method(request, timeout=timeout or self.timeout,
                          metadata=self._metadata(request))
            started = False
            try:
                for message in call:
                    started = True
                    yield message
                return
            except grpc.RpcError as error:
                if (error.code() != grpc.StatusCode.UNAVAILABLE or (started and not resumable)
                        or attempt == self.retries):
                    raise from_rpc_error(error, name) from None
                time.sleep(delay)
                delay *= 2
            finally:
                call.cancel()

    # -- models ----------------------------------------------------------------------------------

    def models(self) -> List[models_pb2.ModelInfo]:
        """The repository's models, loaded or not."""
        return list(self._unary(self._models.ListModels, models_pb2.ListModelsRequest(),
                                "ListModels").models)

    def server_info(self) -> models_pb2.ServerInfo:
        return self._unary(self._models.GetServerInfo, models_pb2.GetServerInfoRequest(),
                           "GetServerInfo")

    def tokenize(self, text: str, model: Optional[str] = None,
                 add_special_tokens: bool = False) -> List[types_pb2.Token]:
        request = models_pb2.TokenizeRequest(model=model or self.model, text=text,
                                             add_special_tokens=add_special_tokens)
        return list(self._unary(self._models.Tokenize, request, "Tokenize").tokens)

    def get_model(self, model: Optional[str] = None) -> models_pb2.ModelInfo:
        """One model: its state, architecture, lenses, memory and hook points."""
        return self._unary(self._models.GetModel,
                           models_pb2.GetModelRequest(model=model or self.model), "GetModel")

    def load_model(self, model: str, dtype: str = "", device: str = "",
                   timeout: Optional[float] = 600.0) -> models_pb2.ModelInfo:
        """Loads a model of the repository (admin); dtype float32/bfloat16/float16, device cpu or
        cuda:N (defaults: the server's)."""
        request = models_pb2.LoadModelRequest(model=model, dtype=dtype, device=device)
        return self._unary(self._models.LoadModel, request, "LoadModel", timeout)

    def unload_model(self, model: str) -> int:
        """Unloads a model (admin) once its queued requests are done; returns the bytes freed."""
        request = models_pb2.UnloadModelRequest(model=model)
        return self._unary(self._models.UnloadModel, request, "UnloadModel").freed_bytes

    def detokenize(self, ids: Sequence[int], model: Optional[str] = None,
                   skip_special_tokens: bool = False) -> str:
        request = models_pb2.DetokenizeRequest(model=model or self.model, ids=list(ids),
                                               skip_special_tokens=skip_special_tokens)
        return self._unary(self._models.Detokenize, request, "Detokenize").text

    def unload_lens(self, lens: str, model: Optional[str] = None) -> int:
        """Unloads a tuned lens (admin); returns the bytes freed."""
        request = models_pb2.UnloadLensRequest(model=model or self.model, lens=lens)
        return self._unary(self._models.UnloadLens, request, "UnloadLens").freed_bytes

    def load_lens(self, lens: str, model: Optional[str] = None) -> models_pb2.LensInfo:
        """Loads <repository>/<model>/lenses/<lens> (admin)."""
        request = models_pb2.LoadLensRequest(model=model or self.model, lens=lens)
        return self._unary(self._models.LoadLens, request, "LoadLens")

    # -- lenses ----------------------------------------------------------------------------------

    def decode(self, prompt: Prompt, lens: str = "logit", model: Optional[str] = None,
               layers: Optional[Sequence[int]] = None, positions: Optional[Sequence[int]] = None,
               top_k: int = 5, statistics: Optional[Sequence[str]] = None,
               targets: Optional[Sequence[int]] = None,
               anti_targets: Optional[Sequence[int]] = None, compare_lens: str = "",
               exclude_output: bool = False, resid_mid: bool = False, mask_input: bool = False,
               bits_per_byte: bool = False, interventions: Sequence = (),
               timeout: Optional[float] = None) -> results.DecodeResult:
        """Per-layer decoding of a prompt (text or token ids) through a lens.

        statistics: names among entropy, forward_kl, cross_entropy, target_rank,
        max_probability, log_prob_diff (default: the server's, all but log_prob_diff), or
        ["none"]. interventions: edits applied while the model runs (lensd.interventions)."""
        request = messages.decode(
            model or self.model, prompt, lens, layers, positions, top_k, statistics, targets,
            anti_targets, compare_lens, exclude_output, resid_mid, mask_input, bits_per_byte,
            interventions)
        return results.DecodeResult(self._unary(self._lens.Decode, request, "Decode", timeout))

    def stream_decode(self, prompt: Prompt, lens: str = "logit", model: Optional[str] = None,
                      timeout: Optional[float] = None, **options):
        """Decode plus every row's full log-probabilities: (DecodeResult, {"layer.<l>.log_probs":
        [positions, vocab] float32 array}). Options as decode()."""
        request = messages.decode(model or self.model, prompt, lens, **options)
        chunks, summary = [], None
        for message in self._stream(self._lens.StreamDecode, request, "StreamDecode", timeout):
            if message.HasField("summary"):
                summary = message.summary
            else:
                chunks.append(message.log_probs)
        return results.DecodeResult(summary), results.assemble(chunks)

    def generate(self, prompt: Prompt, lens: str = "logit", layer: Optional[int] = None,
                 model: Optional[str] = None, max_new_tokens: int = 32, greedy: bool = False,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
                 stop_tokens: Sequence[int] = (), early_exit: bool = False,
                 interventions: Sequence = (), also_unedited: bool = False,
                 timeout: Optional[float] = None) -> Iterator[results.GeneratedToken]:
        """Tokens sampled from a lens at `layer` (None: the model's own output), as they come.
        interventions apply at every step; with also_unedited the last token also carries the
        continuation without them (same seed)."""
        request = messages.generate(model or self.model, prompt, lens, layer, max_new_tokens,
                                    greedy, temperature, top_k, top_p, seed, stop_tokens,
                                    early_exit, interventions, also_unedited)
        for m in self._stream(self._lens.Generate, request, "Generate", timeout):
            yield results.GeneratedToken.from_message(m)

    def activations(self, prompt: Prompt, hook_points: Sequence[str],
                    model: Optional[str] = None, native_dtype: bool = False,
                    torch: Optional[bool] = None, gradients: bool = False,
                    metric: Optional[types_pb2.Metric] = None, interventions: Sequence = (),
                    timeout: Optional[float] = None) -> Dict:
        """Values at TransformerLens hook points (e.g. "blocks.2.hook_resid_post") by name: numpy
        arrays, or torch tensors when `torch` (None: when torch is installed). With `gradients`,
        also d metric / d value as "<hook>.grad" (metric: lensd.attribution.metric(...); default
        the loss of the last token's prediction). interventions apply before the values are
        read."""
        request = messages.activations(model or self.model, prompt, hook_points, native_dtype,
                                       interventions)
        request.gradients = gradients
        if metric is not None:
            request.metric.CopyFrom(metric)
        arrays = results.assemble(
            self._stream(self._lens.GetActivations, request, "GetActivations", timeout))
        return results.as_torch(arrays, torch)

    def activation_patching(self, clean: Prompt, corrupted: Prompt,
                            metric: Optional[types_pb2.Metric] = None,
                            sweeps: Sequence[str] = ("resid_pre",), direction: str = "denoising",
                            layers: Sequence[int] = (), positions: Sequence[int] = (),
                            model: Optional[str] = None, progress=None,
                            timeout: Optional[float] = None) -> patching.PatchingResult:
        """Activation patching sweeps (TransformerLens's patching module) on the server: sweeps
        among resid_pre, resid_mid, resid_post, attn_out, mlp_out, z, q, k, v, pattern (by
        position; "<site>_all_pos" for every position at once); metric from
        lensd.attribution.metric (default: the loss of the last token's prediction).
        `progress(done, total)` is called as batches of patched runs finish."""
        request = patching.request(model or self.model, clean, corrupted,
                                   metric or types_pb2.Metric(), sweeps, direction, layers,
                                   positions)
        for m in self._stream(self._lens.ActivationPatching, request, "ActivationPatching",
                              timeout):
            if m.HasField("progress"):
                if progress is not None:
                    progress(m.progress.done, m.progress.total)
            else:
                return patching.PatchingResult(m.result)
        raise RuntimeError("ActivationPatching ended without a result")

    def submit_patching(self, clean: Prompt, corrupted: Prompt,
                        metric: Optional[types_pb2.Metric] = None,
                        sweeps: Sequence[str] = ("resid_pre",), direction: str = "denoising",
                        layers: Sequence[int] = (), positions: Sequence[int] = (),
                        model: Optional[str] = None, watch: bool = False,
                        progress: bool = True) -> training_pb2.Job:
        """activation_patching as a durable job (train role): it survives the client going away
        and a server restart (it starts over); its step counts patched runs. With watch=True waits
        for the end and returns the final job; lensd.patching.from_job(job) reads its grids."""
        request = training_pb2.SubmitJobRequest(
            model=model or self.model,
            activation_patching=patching.request("", clean, corrupted,
                                                 metric or types_pb2.Metric(), sweeps, direction,
                                                 layers, positions))
        submitted = self._unary(self._training.SubmitJob, request, "SubmitJob", retry=False)
        return self.watch(submitted.id, progress) if watch else submitted

    # -- SAEs and attribution --------------------------------------------------------------------

    def load_sae(self, sae: str, model: Optional[str] = None, hook_point: str = "",
                 dtype: str = "") -> models_pb2.SaeInfo:
        """Attaches <repository>/<model>/saes/<sae> (SAELens or sparsify folder; admin)."""
        request = models_pb2.LoadSaeRequest(model=model or self.model, sae=sae,
                                            hook_point=hook_point, dtype=dtype)
        return self._unary(self._models.LoadSae, request, "LoadSae")

    def unload_sae(self, sae: str, model: Optional[str] = None) -> int:
        """Detaches an SAE (admin); returns the bytes freed."""
        request = models_pb2.UnloadSaeRequest(model=model or self.model, sae=sae)
        return self._unary(self._models.UnloadSae, request, "UnloadSae").freed_bytes

    def encode_sae(self, prompt: Prompt, saes: Sequence[str] = (), model: Optional[str] = None,
                   top_k: int = 16, timeout: Optional[float] = None,
                   **options) -> attribution.SaeEncoding:
        """Sparse feature activations of the SAEs (default every loaded one) per position.
        Options: threshold, exclude_special_tokens."""
        request = attribution.encode_sae(model or self.model, prompt, saes, top_k, **options)
        return attribution.SaeEncoding(
            self._unary(self._attribution.EncodeSae, request, "EncodeSae", timeout))

    def node_attribution(self, prompt: Prompt, saes: Sequence[str] = (),
                         model: Optional[str] = None, sign: str = "patch_effect",
                         interventions: Sequence = (), timeout: Optional[float] = None,
                         **options) -> attribution.NodeAttributionResult:
        """Effects of every SAE feature and error node on a metric, largest first;
        .to_dataframe() has token-trace's columns. Options as lensd.attribution.node_attribution
        (metric_kind, positions, target, foil, baseline, patch, reference, method, ig_steps,
        per_dimension_errors, top_n, min_abs_effect, exclude_special_tokens); interventions:
        edits every pass runs with (lensd.interventions)."""
        request = attribution.node_attribution(model or self.model, prompt, saes, sign=sign,
                                                **options)
        request.interventions.extend(interventions)
        return attribution.NodeAttributionResult(
            self._unary(self._attribution.NodeAttribution, request, "NodeAttribution", timeout),
            sign)

    def layer_attribution(self, prompt: Prompt, model: Optional[str] = None,
                          interventions: Sequence = (), timeout: Optional[float] = None,
                          **options) -> attribution.LayerAttributionResult:
        """Direct logit attribution per component (mode="direct_logit": values + bias = logit)
        or the logit lens of the target per layer. Options: position, target, foil, mode,
        per_head (attention outputs split into heads and the output bias); interventions: edits
        the passes run with."""
        request = attribution.layer_attribution(model or self.model, prompt, **options)
        request.interventions.extend(interventions)
        return attribution.LayerAttributionResult(
            self._unary(self._lens.LayerAttribution, request, "LayerAttribution", timeout))

    # -- jobs ------------------------------------------------------------------------------------

    def train_lens(self, lens_name: str, data: Data,
                   model: Optional[str] = None, watch: bool = False, progress: bool = True,
                   **options) -> training_pb2.Job:
        """Submits a tuned-lens training job (train role). `data` is a path under the server's
        data root, or a list of texts. Options as TrainLensJob (num_steps, seq_len,
        tokens_per_step, micro_batch, loss, lr_scale, ...). With watch=True waits for the end
        (a tqdm progress bar when `progress`) and returns the final job."""
        request = messages.train_lens(model or self.model, lens_name, data, **options)
        submitted = self._unary(self._training.SubmitJob, request, "SubmitJob", retry=False)
        return self.watch(submitted.id, progress) if watch else submitted

    def evaluate_lenses(self, data: Data,
                        lenses: Sequence[str] = (), model: Optional[str] = None,
                        watch: bool = False, progress: bool = True,
                        **options) -> training_pb2.Job:
        """Submits a lens-evaluation job (train role): tuned-lens's per-layer ce, entropy and KL
        for `lenses` (default: logit and every loaded tuned lens). Options as EvalLensJob
        (seq_len, batch, tokens, token_shift, seed)."""
        request = messages.evaluate_lenses(model or self.model, data, lenses, **options)
        submitted = self._unary(self._training.SubmitJob, request, "SubmitJob", retry=False)
        return self.watch(submitted.id, progress) if watch else submitted

    def job(self, job_id: str) -> training_pb2.Job:
        return self._unary(self._training.GetJob, training_pb2.GetJobRequest(id=job_id), "GetJob")

    def jobs(self, all_tenants: bool = False) -> List[training_pb2.Job]:
        request = training_pb2.ListJobsRequest(tenant="*" if all_tenants else "")
        return list(self._unary(self._training.ListJobs, request, "ListJobs").jobs)

    def cancel(self, job_id: str) -> training_pb2.Job:
        return self._unary(self._training.CancelJob, training_pb2.CancelJobRequest(id=job_id),
                           "CancelJob")

    def watch(self, job_id: str, progress: bool = True) -> training_pb2.Job:
        """Follows a job to its end (a tqdm bar of steps when `progress` and tqdm is installed);
        returns the final job."""
        bar = None
        last = None
        try:
            for job in self._stream(self._training.WatchJob,
                                    training_pb2.WatchJobRequest(id=job_id), "WatchJob",
                                    resumable=True,
                                    timeout=365 * 24 * 3600.0):
                last = job
                if progress and bar is None and job.num_steps > 0:
                    tqdm = _tqdm()
                    if tqdm is None:
                        progress = False
                    else:
                        bar = tqdm(total=job.num_steps, desc=f"{job.kind} {job.id}", unit="step")
                if bar is not None:
                    bar.total = job.num_steps
                    bar.update(job.step - bar.n)
                    if job.layer_losses:
                        bar.set_postfix(loss=f"{job.layer_losses[-1]:.4f}",
                                        tok_s=f"{job.tokens_per_second:.0f}")
        finally:
            if bar is not None:
                bar.close()
        return last


def _tqdm():
    """tqdm's notebook bar where ipywidgets can draw it, else its text bar; None without tqdm."""
    try:
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        try:
            from tqdm import tqdm
        except ImportError:
            return None
    return tqdm
