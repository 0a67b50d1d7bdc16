"""ActivationPatching through the Python client against a live lensd on the demo model, checked
against transformer_lens.patching on the same weights (a HookedTransformer holding them
unprocessed; float32, 1e-4 per cell)."""
import sys

import grpc
import numpy as np
import pytest
import torch
import transformers

import lensd
from lensd.v1 import training_pb2
from conftest import REPO, Server

sys.path.insert(0, str(REPO / "tests" / "parity"))
from intervention_reference import hooked  # noqa: E402
from transformer_lens import patching as tl_patching  # noqa: E402

CLEAN = "And God said, Let there be light: and there was"


@pytest.fixture(scope="module")
def tl_model():
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        REPO / "deploy" / "models" / "kjv-gpt2").eval()
    return hooked(hf)


def test_grids_equal_transformer_lens_patching(client, tl_model):
    clean = client.decode(CLEAN, layers=[0], top_k=1).input_ids.tolist()
    corrupted = list(clean)
    corrupted[2] = (corrupted[2] + 7) % 4096
    target, foil = clean[-1], corrupted[2]
    seen = []
    result = client.activation_patching(
        clean, corrupted, lensd.attribution.metric("logit_diff", target=target, foil=foil),
        sweeps=["resid_pre", "attn_out", "z_all_pos"],
        progress=lambda done, total: seen.append((done, total)))

    def metric(logits):
        return logits[0, -1, target] - logits[0, -1, foil]

    with torch.no_grad():
        _, cache = tl_model.run_with_cache(torch.tensor([clean]))
        corrupted_ids = torch.tensor([corrupted])
        expected = {
            "resid_pre": tl_patching.get_act_patch_resid_pre(tl_model, corrupted_ids, cache, metric),
            "attn_out": tl_patching.get_act_patch_attn_out(tl_model, corrupted_ids, cache, metric),
            "z_all_pos": tl_patching.get_act_patch_attn_head_out_all_pos(
                tl_model, corrupted_ids, cache, metric),
        }
        clean_metric = metric(tl_model(torch.tensor([clean]))).item()
    assert result.clean_metric == pytest.approx(clean_metric, abs=1e-4)
    for name, grid in expected.items():
        np.testing.assert_allclose(result[name].metric, grid.numpy(), atol=1e-4, err_msg=name)
    assert result["resid_pre"].metric.shape == (6, len(clean))
    assert result["z_all_pos"].dims == ["layer", "head"]
    span = result.clean_metric - result.corrupted_metric
    np.testing.assert_allclose(result["resid_pre"].normalized,
                               (result["resid_pre"].metric - result.corrupted_metric) / span,
                               atol=1e-4)
    assert seen and seen[-1][0] == seen[-1][1] == result.patched_runs
    frame = result["resid_pre"].to_dataframe()
    assert len(frame) == 6 * len(clean) and set(frame.columns) >= {"layer", "position", "token"}
    figure = result.heatmap("resid_pre")
    assert figure.data[0].z.shape == (6, len(clean))


def test_bad_sweeps_are_refused_naming_the_field(client):
    with pytest.raises(lensd.LensdError) as e:
        client.activation_patching(CLEAN, CLEAN + " light")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "corrupted" in str(e.value)
    with pytest.raises(lensd.LensdError) as e:
        client.activation_patching(CLEAN, CLEAN, layers=[9])
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "layers" in str(e.value)
    with pytest.raises(lensd.LensdError) as e:
        client.activation_patching(CLEAN, CLEAN, sweeps=["resid_pre", "resid_pre"])
    assert "given twice" in str(e.value)


def test_a_sweep_above_the_bound_is_refused_with_its_size():
    server = Server("--max_patching_cells=50")
    try:
        with lensd.Client(server.address, token=server.tokens["read"]) as c:
            with pytest.raises(lensd.LensdError) as e:
                c.activation_patching(CLEAN, CLEAN, model="kjv-gpt2", sweeps=["z"])
            assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--max_patching_cells of 50" in str(e.value)
    finally:
        server.stop()


def test_a_patching_job_gives_the_rpcs_grids(client):
    clean = client.decode(CLEAN, layers=[0], top_k=1).input_ids.tolist()
    corrupted = list(clean)
    corrupted[3] = (corrupted[3] + 11) % 4096
    metric = lensd.attribution.metric("logit_diff", target=clean[-1], foil=corrupted[3])
    sweeps = ["resid_pre", "z_all_pos", "pattern"]
    streamed = client.activation_patching(clean, corrupted, metric, sweeps=sweeps)
    job = client.submit_patching(CLEAN, corrupted, metric, sweeps=sweeps, watch=True,
                                 progress=False)
    assert job.kind == "patch" and job.state == training_pb2.JOB_STATE_SUCCEEDED, job
    result = lensd.patching.from_job(job)
    assert job.step == job.num_steps == result.patched_runs == streamed.patched_runs
    assert [t.id for t in result.message.clean_tokens] == clean
    assert result.clean_metric == pytest.approx(streamed.clean_metric, abs=1e-6)
    for name in ["resid_pre", "z_all_pos", "pattern"]:
        assert result[name].dims == streamed[name].dims
        np.testing.assert_allclose(result[name].metric, streamed[name].metric, atol=1e-6,
                                   err_msg=name)
        np.testing.assert_allclose(result[name].normalized, streamed[name].normalized,
                                   atol=1e-6, err_msg=name)
    assert '"ids"' in job.spec_json  # the text was tokenized at submission


def test_a_bad_patching_job_is_refused_at_submission(client):
    cases = [
        (dict(corrupted=CLEAN + " light"), "activation_patching.corrupted: "),
        (dict(layers=[9]), "activation_patching.layers: layer 9 out of range"),
        (dict(sweeps=["resid_pre", "resid_pre"]), "activation_patching.sweeps[1]: given twice"),
        (dict(positions=[99]), "activation_patching.positions: position 99"),
    ]
    before = len(client.jobs())
    for options, message in cases:
        options.setdefault("corrupted", CLEAN)
        with pytest.raises(lensd.LensdError) as e:
            client.submit_patching(CLEAN, **options)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT, e.value
        assert message in str(e.value), e.value
    assert len(client.jobs()) == before  # nothing was queued
