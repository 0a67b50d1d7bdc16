"""Interventions through the Python client against a live lensd on the demo model, checked against
transformers with the same edit made by a forward hook on the same weights (float32, 1e-4)."""
import grpc
import numpy as np
import pytest
import torch
import transformers

import lensd
from lensd import interventions as iv
from conftest import REPO

PROMPT = "And God said, Let there be light: and there was"


@pytest.fixture(scope="module")
def reference():
    return transformers.AutoModelForCausalLM.from_pretrained(
        REPO / "deploy" / "models" / "kjv-gpt2").eval()


def ids_of(client, text):
    return client.decode(text, layers=[0], top_k=1).input_ids.tolist()


def steered_logits(model, ids, layer, vector):
    """Logits with `vector` added to the stream entering block `layer` (hook_resid_pre)."""
    def pre_hook(module, args, kwargs):
        return (args[0] + vector,) + args[1:], kwargs
    handle = model.transformer.h[layer].register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        with torch.no_grad():
            return model(torch.tensor([ids])).logits[0]
    finally:
        handle.remove()


def test_steered_decode_equals_a_transformers_forward_hook(client, reference):
    ids = ids_of(client, PROMPT)
    vector = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    result = client.decode(PROMPT, layers=[0], top_k=1, statistics=["entropy"],
                           interventions=[lensd.steer("blocks.2.hook_resid_pre", vector, 2.5)])
    expected = steered_logits(reference, ids, 2, 2.5 * torch.from_numpy(vector))
    probs = expected.softmax(-1)
    ours = result.top_probs[-1, :, 0]  # the output row
    np.testing.assert_allclose(ours, probs.max(-1).values.numpy(), atol=1e-4)
    assert result.top_ids[-1, :, 0].tolist() == expected.argmax(-1).tolist()
    plain = client.decode(PROMPT, layers=[0], top_k=1)
    assert np.abs(plain.top_probs[-1, :, 0] - ours).max() > 1e-3


def test_steered_generation_and_the_unedited_continuation(client, reference):
    ids = ids_of(client, PROMPT)
    vector = torch.from_numpy(np.random.default_rng(1).standard_normal(128).astype(np.float32))
    tokens = list(client.generate(PROMPT, greedy=True, max_new_tokens=6, also_unedited=True,
                                  interventions=[iv.steer("blocks.1.hook_resid_pre", vector, 6.0)]))
    sequence = list(ids)
    for _ in range(6):
        sequence.append(int(steered_logits(reference, sequence, 1, 6.0 * vector)[-1].argmax()))
    assert [t.id for t in tokens] == sequence[len(ids):]
    plain = [t.id for t in client.generate(PROMPT, greedy=True, max_new_tokens=6)]
    assert list(tokens[-1].unedited_ids) == plain
    assert plain != [t.id for t in tokens]


def test_patched_activations_take_the_sources_values(client):
    source = ids_of(client, PROMPT)  # the prompt with two tokens changed, as token ids
    source[1], source[4] = 42, 77
    point = "blocks.1.hook_resid_post"
    clean = client.activations(source, [point], torch=False)[point]
    patched = client.activations(PROMPT, [point, "blocks.2.hook_resid_post"], torch=False,
                                 interventions=[iv.patch(point, source, positions=[2, 5])])
    np.testing.assert_allclose(patched[point][0, [2, 5]], clean[0, [2, 5]], atol=1e-6)
    plain = client.activations(PROMPT, [point], torch=False)[point]
    np.testing.assert_allclose(patched[point][0, [0, 1, 3]], plain[0, [0, 1, 3]], atol=1e-6)


def test_head_ablation_zeroes_those_heads_only(client):
    point = "blocks.0.attn.hook_z"
    z = client.activations(PROMPT, [point], torch=False,
                           interventions=[lensd.ablate_heads(0, [1, 3])])[point]
    plain = client.activations(PROMPT, [point], torch=False)[point]
    assert np.all(z[:, :, [1, 3]] == 0)
    np.testing.assert_array_equal(z[:, :, [0, 2]], plain[:, :, [0, 2]])


def test_bad_interventions_name_the_index_and_field(client):
    cases = [
        ([iv.scale("blocks.0.hook_resid_pre", 2.0), iv.ablate("blocks.9.hook_resid_pre")],
         "interventions[1].hook_point"),
        ([iv.steer("blocks.0.hook_resid_pre", np.ones(7))], "interventions[0].add.vector"),
        ([iv.ablate_heads(0, [9])], "interventions[0].heads"),
        ([iv.patch("blocks.0.hook_resid_post", "And")], "interventions[0].patch"),
        ([iv.interventions_pb2.Intervention(hook_point="hook_embed")],
         "interventions[0]: no operation"),
    ]
    for edits, field in cases:
        with pytest.raises(lensd.LensdError) as e:
            client.decode(PROMPT, interventions=edits)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT, e.value
        assert field in str(e.value), e.value
    with pytest.raises(lensd.LensdError) as e:
        client.decode(PROMPT, interventions=[iv.clamp_sae("missing", 0, 1.0)])
    assert e.value.code == grpc.StatusCode.NOT_FOUND


def test_every_rpc_refuses_bad_interventions_before_running(client):
    """Generate, GetActivations, LayerAttribution and NodeAttribution check the edits at
    admission, naming the field, as Decode does."""
    bad = [iv.scale("blocks.0.hook_resid_pre", 2.0), iv.ablate_heads(0, [9])]
    calls = {
        "Generate": lambda: list(client.generate(PROMPT, max_new_tokens=2, greedy=True,
                                                 interventions=bad)),
        "GetActivations": lambda: client.activations(PROMPT, ["blocks.0.hook_resid_post"],
                                                     interventions=bad),
        "LayerAttribution": lambda: client.layer_attribution(PROMPT, interventions=bad),
        "NodeAttribution": lambda: client.node_attribution(PROMPT, interventions=bad),
    }
    for name, call in calls.items():
        with pytest.raises(lensd.LensdError) as e:
            call()
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT, (name, e.value)
        assert "interventions[1].heads" in str(e.value), (name, e.value)
