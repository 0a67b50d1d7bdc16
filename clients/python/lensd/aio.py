"""The asyncio client (grpc.aio): the same calls as lensd.Client, as coroutines and async
iterators, for notebooks running an event loop and for asyncio services.

    async with lensd.aio.Client(address) as client:
        result = await client.decode("And God said", lens="tuned")
        async for token in client.generate("And God said", layer=3, greedy=True):
            print(token.text, end="")
"""
import asyncio
import os
from typing import AsyncIterator, Dict, List, Optional, Sequence

import grpc
import grpc.aio

import lensd
from lensd import attribution, messages, patching, results
from lensd.errors import from_rpc_error
from lensd.messages import Data, Prompt
from lensd.v1 import attribution_pb2_grpc, lens_pb2_grpc, models_pb2, models_pb2_grpc
from lensd.v1 import training_pb2, training_pb2_grpc, types_pb2


class Client:
    """An asyncio connection to a lensd server; arguments as lensd.Client."""

    def __init__(self, address: Optional[str] = None, token: Optional[str] = None,
                 tls: bool = False, root_certificates: Optional[bytes] = None,
                 timeout: float = 60.0, retries: int = 3, backoff: float = 0.2,
                 model: str = "kjv-gpt2"):
        self.address = address or os.environ.get("LENSD_ADDRESS") or "127.0.0.1:50051"
        self._token = token if token is not None else os.environ.get("LENSD_TOKEN", "")
        self.timeout, self.retries, self.backoff, self.model = timeout, retries, backoff, model
        options = [("grpc.max_receive_message_length", 64 << 20)]
        if tls:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.aio.secure_channel(self.address, credentials, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(self.address, options=options)
        self._models = models_pb2_grpc.ModelsStub(self._channel)
        self._lens = lens_pb2_grpc.LensStub(self._channel)
        self._training = training_pb2_grpc.TrainingStub(self._channel)
        self._attribution = attribution_pb2_grpc.AttributionStub(self._channel)

    async def close(self):
        await self._channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

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

    async def _unary(self, method, request, name: str, timeout: Optional[float] = None,
                     retry: bool = True):
        """One call; UNAVAILABLE is retried unless `retry` is off (a call that is not
        idempotent: SubmitJob would queue a second job)."""
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return await method(request, timeout=timeout or self.timeout,
                                    metadata=self._metadata(request))
            except grpc.aio.AioRpcError as error:
                if (error.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.retries
                        or not retry):
                    raise from_rpc_error(error, name) from None
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    async def _stream(self, method, request, name: str, timeout: Optional[float] = None):
        delay = self.backoff
        for attempt in range(self.retries + 1):
            call = method(request, timeout=timeout or self.timeout,
                          metadata=self._metadata(request))
            started = False
            try:
                async for message in call:
                    started = True
                    yield message
                return
            except grpc.aio.AioRpcError as error:
                if (error.code() != grpc.StatusCode.UNAVAILABLE or started
                        or attempt == self.retries):
                    raise from_rpc_error(error, name) from None
                await asyncio.sleep(delay)
                delay *= 2
            finally:
                call.cancel()

    async def models(self) -> List[models_pb2.ModelInfo]:
        response = await self._unary(self._models.ListModels, models_pb2.ListModelsRequest(),
                                     "ListModels")
        return list(response.models)

    async def decode(self, prompt: Prompt, lens: str = "logit", model: Optional[str] = None,
                     timeout: Optional[float] = None, **options) -> results.DecodeResult:
        """As lensd.Client.decode."""
        request = messages.decode(model or self.model, prompt, lens, **options)
        return results.DecodeResult(await self._unary(self._lens.Decode, request, "Decode",
                                                      timeout))

    async def generate(self, prompt: Prompt, lens: str = "logit", model: Optional[str] = None,
                       timeout: Optional[float] = None,
                       **options) -> AsyncIterator[results.GeneratedToken]:
        """As lensd.Client.generate, as an async iterator."""
        request = messages.generate(model or self.model, prompt, lens, **options)
        async for m in self._stream(self._lens.Generate, request, "Generate", timeout):
            yield results.GeneratedToken.from_message(m)

    async def activation_patching(self, clean: Prompt, corrupted: Prompt,
                                  metric: Optional[types_pb2.Metric] = None,
                                  sweeps: Sequence[str] = ("resid_pre",),
                                  direction: str = "denoising", layers: Sequence[int] = (),
                                  positions: Sequence[int] = (), model: Optional[str] = None,
                                  progress=None, timeout: Optional[float] = None
                                  ) -> patching.PatchingResult:
        """As lensd.Client.activation_patching."""
        request = patching.request(model or self.model, clean, corrupted,
                                   metric or types_pb2.Metric(), sweeps, direction, layers,
                                   positions)
        async for m in self._stream(self._lens.ActivationPatching, request, "ActivationPatching",
                                    timeout):
            if m.HasField("progress"):
                if progress is not None:
                    progress(m.progress.done, m.progress.total)
            else:
                return patching.PatchingResult(m.result)
        raise RuntimeError("ActivationPatching ended without a result")

    async def activations(self, prompt: Prompt, hook_points: Sequence[str],
                          model: Optional[str] = None, native_dtype: bool = False,
                          torch: Optional[bool] = None, gradients: bool = False,
                          metric: Optional[types_pb2.Metric] = None,
                          interventions: Sequence = (),
                          timeout: Optional[float] = None) -> Dict:
        """As lensd.Client.activations."""
        request = messages.activations(model or self.model, prompt, hook_points, native_dtype,
                                       interventions)
        request.gradients = gradients
        if metric is not None:
            request.metric.CopyFrom(metric)
        chunks = [c async for c in self._stream(self._lens.GetActivations, request,
                                                "GetActivations", timeout)]
        return results.as_torch(results.assemble(chunks), torch)

    async def encode_sae(self, prompt: Prompt, saes: Sequence[str] = (),
                         model: Optional[str] = None, top_k: int = 16,
                         timeout: Optional[float] = None, **options) -> attribution.SaeEncoding:
        """As lensd.Client.encode_sae."""
        request = attribution.encode_sae(model or self.model, prompt, saes, top_k, **options)
        return attribution.SaeEncoding(
            await self._unary(self._attribution.EncodeSae, request, "EncodeSae", timeout))

    async def node_attribution(self, prompt: Prompt, saes: Sequence[str] = (),
                               model: Optional[str] = None, sign: str = "patch_effect",
                               timeout: Optional[float] = None,
                               **options) -> attribution.NodeAttributionResult:
        """As lensd.Client.node_attribution."""
        request = attribution.node_attribution(model or self.model, prompt, saes, sign=sign,
                                                **options)
        response = await self._unary(self._attribution.NodeAttribution, request,
                                     "NodeAttribution", timeout)
        return attribution.NodeAttributionResult(response, sign)

    async def layer_attribution(self, prompt: Prompt, model: Optional[str] = None,
                                timeout: Optional[float] = None,
                                **options) -> attribution.LayerAttributionResult:
        """As lensd.Client.layer_attribution."""
        request = attribution.layer_attribution(model or self.model, prompt, **options)
        return attribution.LayerAttributionResult(
            await self._unary(self._lens.LayerAttribution, request, "LayerAttribution", timeout))

    async def train_lens(self, lens_name: str, data: Data, model: Optional[str] = None,
                         **options) -> training_pb2.Job:
        """Submits a tuned-lens training job; `await client.watch(job.id)` follows it."""
        request = messages.train_lens(model or self.model, lens_name, data, **options)
        return await self._unary(self._training.SubmitJob, request, "SubmitJob", retry=False)

    async def evaluate_lenses(self, data: Data, lenses: Sequence[str] = (),
                              model: Optional[str] = None, **options) -> training_pb2.Job:
        """Submits a lens-evaluation job."""
        request = messages.evaluate_lenses(model or self.model, data, lenses, **options)
        return await self._unary(self._training.SubmitJob, request, "SubmitJob", retry=False)

    async def job(self, job_id: str) -> training_pb2.Job:
        return await self._unary(self._training.GetJob, training_pb2.GetJobRequest(id=job_id),
                                 "GetJob")

    async def cancel(self, job_id: str) -> training_pb2.Job:
        return await self._unary(self._training.CancelJob,
                                 training_pb2.CancelJobRequest(id=job_id), "CancelJob")

    async def watch(self, job_id: str) -> AsyncIterator[training_pb2.Job]:
        """The job now, then on every change, until it ends."""
        async for job in self._stream(self._training.WatchJob,
                                      training_pb2.WatchJobRequest(id=job_id), "WatchJob",
                                      timeout=365 * 24 * 3600.0):
            yield job
