"""The asyncio client against the same live lensd: the same decode as the synchronous client,
generation as an async iterator, errors as LensdError, and a watched job."""
import asyncio

import grpc
import numpy as np
import pytest

import lensd
import lensd.aio

PROMPT = "In the beginning God created"


def run(coroutine):
    return asyncio.run(coroutine)


def test_decode_equals_the_synchronous_clients(server, client):
    async def decode():
        async with lensd.aio.Client(server.address, token=server.tokens["read"]) as c:
            return await c.decode(PROMPT, lens="tuned", top_k=3)
    ours = run(decode())
    theirs = client.decode(PROMPT, lens="tuned", top_k=3)
    np.testing.assert_array_equal(ours.top_ids, theirs.top_ids)
    np.testing.assert_allclose(ours.entropy, theirs.entropy)


def test_generation_and_activations(server):
    async def go():
        async with lensd.aio.Client(server.address, token=server.tokens["read"]) as c:
            tokens = [t async for t in c.generate(PROMPT, layer=2, greedy=True,
                                                  max_new_tokens=5)]
            acts = await c.activations(PROMPT, ["blocks.0.hook_resid_pre"], torch=False)
            return tokens, acts
    tokens, acts = run(go())
    assert [t.step for t in tokens] == list(range(5)) and tokens[-1].finished
    assert acts["blocks.0.hook_resid_pre"].shape[-1] == 128


def test_errors_and_jobs(server):
    async def go():
        async with lensd.aio.Client(server.address, token=server.tokens["train"]) as c:
            with pytest.raises(lensd.LensdError) as e:
                await c.decode(PROMPT, positions=[99])
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "positions" in e.value.message
            job = await c.evaluate_lenses([PROMPT * 30], lenses=["logit"], seq_len=8, batch=4)
            states = [j.state async for j in c.watch(job.id)]
            return states
    states = run(go())
    assert states[-1] == lensd.v1.training_pb2.JOB_STATE_SUCCEEDED
