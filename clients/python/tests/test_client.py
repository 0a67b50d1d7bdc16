"""The Python client against a live lensd (conftest.py): numbers equal transformers' on the same
weights, errors carry the code and the server's message, the version check, retries with
backoff, deadlines, streams, activations and jobs."""
import json
import os
import time

import grpc
import numpy as np
import pytest
import torch
import transformers

import lensd
from conftest import REPO, Server

PROMPT = "And God said, Let there be light: and there was"


@pytest.fixture(scope="module")
def reference():
    """The demo model in transformers and the prompt's ids and hidden states there."""
    model = transformers.AutoModelForCausalLM.from_pretrained(
        REPO / "deploy" / "models" / "kjv-gpt2").eval()
    return model


def test_decode_output_row_equals_transformers(client, reference):
    result = client.decode(PROMPT, top_k=3)
    assert result.lens == "logit" and result.units == "nats"
    assert list(result.layers) == list(range(7)) and result.is_output[-1]
    ids = torch.from_numpy(result.input_ids)[None]
    with torch.no_grad():
        probs = reference(ids).logits[0].softmax(-1)
    top = probs.topk(3, -1)
    np.testing.assert_array_equal(result.top_ids[-1], top.indices.numpy())
    np.testing.assert_allclose(result.top_probs[-1], top.values.numpy(), atol=1e-5)
    entropy = -(probs * probs.log()).sum(-1).numpy()
    np.testing.assert_allclose(result.entropy[-1], entropy, atol=1e-4)
    assert np.all(result.forward_kl[-1] == 0)


def test_decode_dataframe_has_a_row_per_layer_and_position(client):
    result = client.decode(PROMPT, lens="tuned", layers=[1, 3], positions=[0, 5], top_k=2)
    frame = result.to_dataframe()
    assert len(frame) == 3 * 2  # layers 1 and 3 plus the output, at 2 positions
    assert list(frame["layer"].unique()) == [1, 3, 6]
    assert set(result.statistics) >= {"entropy", "forward_kl", "cross_entropy", "target_rank"}
    for column in ["input_token", "top_token", "top_prob", "top_tokens", "entropy", "forward_kl"]:
        assert column in frame.columns
    first = frame.iloc[0]
    assert first["top_token"] == first["top_tokens"][0] and len(first["top_probs"]) == 2
    assert "<table>" in result._repr_html_()


def test_errors_carry_the_code_and_the_servers_message(server, client):
    with pytest.raises(lensd.LensdError) as e:
        client.decode(PROMPT, layers=[9])
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "layers" in e.value.message and e.value.method == "Decode"
    with pytest.raises(lensd.LensdError) as e:
        lensd.Client(server.address, token="").models()
    assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(lensd.LensdError) as e:
        lensd.Client(server.address, token=server.tokens["read"]).load_lens("tuned")
    assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(ValueError, match="statistics"):
        client.decode(PROMPT, statistics=["perplexity"])


def test_token_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("LENSD_TOKEN", server.tokens["read"])
    monkeypatch.setenv("LENSD_ADDRESS", server.address)
    assert [m.name for m in lensd.Client().models()] == ["kjv-gpt2"]


def test_a_server_that_needs_a_newer_client_says_which():
    strict = Server("--min_client_version=9.0.0")
    try:
        with pytest.raises(lensd.VersionError) as e:
            lensd.Client(strict.address, token=strict.tokens["read"]).models()
        assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "9.0.0" in e.value.message
    finally:
        strict.stop()


def test_unavailable_is_retried_with_backoff():
    client = lensd.Client("127.0.0.1:1", retries=2, backoff=0.2, timeout=2)
    started = time.monotonic()
    with pytest.raises(lensd.LensdError) as e:
        client.models()
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started >= 0.2 + 0.4  # two retries after 0.2 s and 0.4 s


def test_generation_streams_tokens_and_deadlines_stop_it(client):
    tokens = list(client.generate(PROMPT, lens="tuned", layer=3, greedy=True, max_new_tokens=8))
    assert [t.step for t in tokens] == list(range(8))
    assert tokens[-1].finished and tokens[-1].finish_reason == "length"
    again = [t.id for t in client.generate(PROMPT, lens="tuned", layer=3, greedy=True,
                                           max_new_tokens=8)]
    assert again == [t.id for t in tokens]
    with pytest.raises(lensd.LensdError) as e:
        for _ in client.generate(PROMPT, max_new_tokens=240, timeout=0.05):
            pass
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_activations_equal_transformers_hidden_states(client, reference):
    acts = client.activations(PROMPT, ["blocks.2.hook_resid_post", "hook_embed"], torch=False)
    ids = torch.from_numpy(client.decode(PROMPT, layers=[0], top_k=1).input_ids)[None]
    with torch.no_grad():
        hidden = reference(ids, output_hidden_states=True).hidden_states
    assert acts["blocks.2.hook_resid_post"].shape == (1, ids.shape[1], 128)
    np.testing.assert_allclose(acts["blocks.2.hook_resid_post"], hidden[3].numpy(), atol=1e-4)
    as_tensors = client.activations(PROMPT, ["hook_embed"], torch=True)
    assert isinstance(as_tensors["hook_embed"], torch.Tensor)


def test_training_and_evaluation_jobs_watched_to_the_end(client):
    job = client.train_lens("py-trained", "verses.jsonl", seq_len=16, tokens_per_step=32,
                            num_steps=5, watch=True, progress=False)
    assert job.state == lensd.v1.training_pb2.JOB_STATE_SUCCEEDED, job.reason
    assert job.step == 5 and len(job.layer_losses) == 6
    assert client.decode(PROMPT, lens="py-trained", layers=[2]).lens == "py-trained"
    evaluation = client.evaluate_lenses(["In the beginning God created the heaven. " * 20],
                                        lenses=["logit", "py-trained"], seq_len=16, batch=2,
                                        watch=True, progress=False)
    metrics = json.loads(evaluation.result_json)["aggregate_metrics"]
    assert set(metrics) == {"logit", "py-trained", "baseline"}
    assert len(metrics["py-trained"]["kl"]) == 6
    assert client.job(job.id).id == job.id
    assert {j.id for j in client.jobs()} >= {job.id, evaluation.id}
    with pytest.raises(lensd.LensdError) as e:
        client.cancel(job.id)
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_heat_maps_interactive_and_png(client, tmp_path):
    result = client.decode(PROMPT, lens="tuned", top_k=5)
    figure = result.heatmap("entropy")
    heat = figure.data[0]
    assert np.asarray(heat.z).shape == (7, len(result.positions))
    assert list(heat.y) == ["0", "1", "2", "3", "4", "5", "output"]
    assert np.asarray(heat.text)[-1, 0] == result.top_tokens[-1, 0, 0]
    assert "0." in np.asarray(heat.hovertext)[0, 0]  # top-k probabilities on hover
    # The PNG the closing note describes: ARTIFACTS (the build's folder in CTest) or tmp.
    out = os.environ.get("LENSD_TEST_ARTIFACTS", str(tmp_path))
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "heatmap_tuned_entropy.png")
    result.save_heatmap_png(path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="log_prob_diff"):
        result.heatmap("log_prob_diff")


def test_model_admin_tokens_and_full_log_probs(client):
    info = client.get_model()
    assert info.name == "kjv-gpt2" and "blocks.0.hook_resid_pre" in list(info.hook_points)
    ids = [t.id for t in client.tokenize(PROMPT)]
    assert client.detokenize(ids) == PROMPT
    summary, log_probs = client.stream_decode(PROMPT, lens="tuned", layers=[2], top_k=1)
    rows = {name: value for name, value in log_probs.items()}
    assert set(rows) == {"layer.2.log_probs", "layer.6.log_probs"}
    assert rows["layer.2.log_probs"].shape == (len(ids), 4096)
    np.testing.assert_allclose(np.exp(rows["layer.2.log_probs"]).sum(-1), 1, atol=1e-4)
    np.testing.assert_array_equal(rows["layer.2.log_probs"].argmax(-1), summary.top_ids[0, :, 0])
    assert client.unload_lens("tuned") > 0
    with pytest.raises(lensd.LensdError) as e:
        client.decode(PROMPT, lens="tuned")
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    assert client.load_lens("tuned").name == "tuned"


def test_packed_answers_read_the_same_as_cells(client):
    """The client asks for packed arrays; the same call answered as rows of cells reads equal."""
    ids = [t.id for t in client.tokenize(PROMPT)]
    options = dict(layers=[0, 2, 5], top_k=4, compare_lens="logit", bits_per_byte=True,
                   statistics=["entropy", "forward_kl", "cross_entropy", "target_rank",
                               "max_probability", "log_prob_diff"],
                   anti_targets=list(reversed(ids)))
    packed = client.decode(PROMPT, lens="tuned", **options)
    assert packed.response.HasField("grid") and len(packed.response.rows) == 0
    request = lensd.messages.decode(client.model, PROMPT, "tuned", packed=False, **options)
    cells = lensd.results.DecodeResult(client._unary(client._lens.Decode, request, "Decode"))
    assert len(cells.response.rows) == 4
    assert packed.statistics == cells.statistics and "kl_to_compare" in packed.statistics
    for name in ["layers", "is_output", "positions", "targets", "top_ids", "top_probs",
                 "top_tokens"] + packed.statistics:
        np.testing.assert_array_equal(getattr(packed, name), getattr(cells, name), err_msg=name)
    assert packed.to_dataframe().equals(cells.to_dataframe())
