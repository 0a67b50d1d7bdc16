"""SAEs and attribution through the Python client against a live lensd (conftest.py), checked
against the references on the same weights: activation gradients against torch autograd through
transformers' GPT-2, EncodeSae against SAELens's own loader and encode of the demo SAE, and the
node DataFrame's token-trace columns (ie = value x grad, features from that encode)."""
import sys

import grpc
import numpy as np
import pytest
import torch
import transformers

import lensd
from conftest import REPO

PROMPT = "And God said, Let there be light: and there was"
SAE = "res3-topk"


@pytest.fixture(scope="module")
def loaded(server):
    with lensd.Client(server.address, token=server.tokens["admin"]) as admin:
        try:
            admin.load_sae(SAE)
        except lensd.LensdError as e:
            assert e.code == grpc.StatusCode.ALREADY_EXISTS
    return True


@pytest.fixture(scope="module")
def hf_model():
    return transformers.AutoModelForCausalLM.from_pretrained(
        REPO / "deploy" / "models" / "kjv-gpt2").eval()


@pytest.fixture(scope="module")
def saelens_sae():
    from sae_lens.saes.sae import SAE as SaeLensSae
    return SaeLensSae.load_from_disk(str(REPO / "deploy" / "models" / "kjv-gpt2" / "saes" / SAE))


def test_activation_gradients_equal_autograd_through_transformers(client, hf_model):
    """d loss / d hidden_states[3] (blocks.3.hook_resid_pre): the cross-entropy of the last
    token's prediction (position T-2 predicting T-1), to 1e-5 relative."""
    out = client.activations(PROMPT, ["blocks.3.hook_resid_pre"], gradients=True, torch=False)
    ids = torch.tensor([t.id for t in client.tokenize(PROMPT)])[None]
    hidden = {}

    def keep(module, args):
        args[0].retain_grad()
        hidden["x"] = args[0]

    handle = hf_model.transformer.h[3].register_forward_pre_hook(keep)
    logits = hf_model(ids).logits
    handle.remove()
    torch.nn.functional.cross_entropy(logits[0, -2], ids[0, -1]).backward()
    want = hidden["x"].grad.numpy()
    np.testing.assert_allclose(out["blocks.3.hook_resid_pre"], hidden["x"].detach().numpy(),
                               atol=1e-4)
    scale = np.abs(want).max()
    np.testing.assert_allclose(out["blocks.3.hook_resid_pre.grad"], want, atol=1e-5 * scale)
    assert np.all(out["blocks.3.hook_resid_pre.grad"][0, -1] == 0)  # after the metric


def test_logit_metric_gradient(client, hf_model):
    ids = [t.id for t in client.tokenize(PROMPT)]
    metric = lensd.attribution.metric("logit", positions=[3], target=17)
    out = client.activations(ids, ["hook_embed"], gradients=True, metric=metric, torch=False)
    x = hf_model.transformer.wte(torch.tensor(ids)[None]).detach().requires_grad_(True)
    logits = hf_model(inputs_embeds=x).logits
    logits[0, 3, 17].backward()
    # fp32 with another reduction order: within 1e-5 of the gradient's largest magnitude.
    want = x.grad.numpy()
    np.testing.assert_allclose(out["hook_embed.grad"], want, atol=1e-5 * np.abs(want).max())


def test_encode_sae_equals_saelens(client, loaded, hf_model, saelens_sae):
    encoding = client.encode_sae(PROMPT, [SAE], top_k=0)
    ids = torch.tensor(encoding.token_ids)[None]
    with torch.no_grad():
        x = hf_model(ids, output_hidden_states=True).hidden_states[3][0]
        want = saelens_sae.encode(x).numpy()
        recon = saelens_sae.decode(saelens_sae.encode(x))
    got = encoding[SAE].dense(want.shape[1])
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_array_equal(encoding[SAE].l0, (want > 0).sum(1))
    err = (x - recon).norm(dim=-1).numpy()
    np.testing.assert_allclose(encoding[SAE].error_norm, err, rtol=1e-4, atol=1e-4)
    frame = encoding.to_dataframe()
    assert list(frame.columns) == ["sae", "hook_point", "token_idx", "token_str", "feature",
                                   "activation"]
    assert len(frame) == int((want > 0).sum())


def test_node_attribution_dataframe_has_token_trace_columns(client, loaded):
    result = client.node_attribution(PROMPT, [SAE], top_n=30, sign="token_trace")
    frame = result.to_dataframe()
    for column in ["module_name", "layer", "module_type", "token_idx", "token_str", "act_type",
                   "feature", "value", "grad", "ie"]:
        assert column in frame.columns
    assert len(frame) == 30 and result.nodes_considered > 30
    features = frame[frame.act_type == "feature"]
    np.testing.assert_allclose(features.ie, features.value * features.grad, rtol=1e-4, atol=1e-6)
    assert (frame.module_name == "blocks.3.hook_resid_pre").all()
    assert list(frame.abs_effect) == sorted(frame.abs_effect, reverse=True)
    tokens = [t.text for t in client.tokenize(PROMPT)]
    assert [tokens[i] for i in frame.token_idx] == list(frame.token_str)
    # The default convention is the patch effect: the opposite sign, the same ie column.
    other = client.node_attribution(PROMPT, [SAE], top_n=30).to_dataframe()
    np.testing.assert_allclose(other.effect, -frame.effect, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(other.ie, frame.ie, rtol=1e-5, atol=1e-7)


def test_bad_attribution_requests_raise_with_the_field(client, loaded):
    with pytest.raises(ValueError, match="method"):
        client.node_attribution(PROMPT, method="magic")
    with pytest.raises(lensd.LensdError) as e:
        client.node_attribution(PROMPT, ["nope"])
    assert e.value.code == grpc.StatusCode.NOT_FOUND and "saes" in e.value.message
    with pytest.raises(lensd.LensdError) as e:
        client.node_attribution(PROMPT, metric_kind="logit_diff", target=3)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "foil" in e.value.message


def test_layer_attribution_sums_to_the_logit(client):
    result = client.layer_attribution(PROMPT)
    assert result.labels[:2] == ["embed", "pos_embed"] and len(result.labels) == 14
    assert abs(result.values.sum() + result.bias - result.logit) < 1e-4 * max(1, abs(result.logit))


def test_asyncio_client_gives_the_same_nodes(server, client, loaded):
    import asyncio

    import lensd.aio

    async def go():
        async with lensd.aio.Client(server.address, token=server.tokens["read"]) as c:
            nodes = await c.node_attribution(PROMPT, [SAE], top_n=10)
            heads = await c.layer_attribution(PROMPT, per_head=True)
            return nodes, heads
    nodes, heads = asyncio.run(go())
    theirs = client.node_attribution(PROMPT, [SAE], top_n=10)
    assert [n.effect for n in nodes.nodes] == [n.effect for n in theirs.nodes]
    assert "0_attn_head3" in heads.labels and "0_attn_bias" in heads.labels
    whole = client.layer_attribution(PROMPT)
    assert abs(heads.values.sum() + heads.bias - whole.logit) < 1e-4 * max(1, abs(whole.logit))


def test_attribution_explains_the_edited_model(client, loaded, hf_model):
    """NodeAttribution's metric and LayerAttribution's logit are those of the steered model: the
    steered decode's loss, and transformers' logit with the same vector added by a hook."""
    vector = np.random.default_rng(3).standard_normal(128).astype(np.float32)
    steer = [lensd.steer("blocks.2.hook_resid_pre", vector, 3.0)]
    ids = client.decode(PROMPT, layers=[0], top_k=1).input_ids.tolist()
    decoded = client.decode(PROMPT, layers=[0], top_k=1, statistics=["cross_entropy"],
                            interventions=steer)
    nodes = client.node_attribution(PROMPT, [SAE], top_n=5, interventions=steer)
    assert nodes.metric == pytest.approx(float(decoded.cross_entropy[-1, -2]), abs=1e-4)
    plain = client.node_attribution(PROMPT, [SAE], top_n=5)
    assert abs(plain.metric - nodes.metric) > 1e-3

    def pre_hook(module, args, kwargs):
        return (args[0] + 3.0 * torch.from_numpy(vector),) + args[1:], kwargs
    handle = hf_model.transformer.h[2].register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        with torch.no_grad():
            logits = hf_model(torch.tensor([ids])).logits[0, -1]
    finally:
        handle.remove()
    layers = client.layer_attribution(PROMPT, interventions=steer)
    assert layers.logit == pytest.approx(float(logits[layers.target[0]]), abs=1e-4)
