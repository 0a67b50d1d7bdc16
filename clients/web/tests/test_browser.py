"""The web UI in Debian's chromium against a live lensd on the demo model: each view is used as a
researcher would (type a prompt, switch lens, run an attribution, start and watch a job), and what
the page shows is compared with the Python client's answer to the same call. A screenshot of each
view is saved (conftest.SCREENSHOTS)."""
import math
import re

import numpy as np
import pytest

import lensd
from lensd.v1 import training_pb2
from page import Page

from conftest import SCREENSHOTS

PROMPT = "And God said, Let there be light: and there was"
OTHER_PROMPT = "In the beginning God created the heaven and the"


@pytest.fixture(scope="module")
def page(browser, web_ui):
    return Page(browser, web_ui.url, SCREENSHOTS)


def _expect_heatmap(shown, result):
    """A heat map on the page equals a DecodeResult: the layers (output on top), the prompt's
    tokens, each cell's top-1 token and statistic, the hover's top-k."""
    labels = result.row_labels()
    assert shown["rows"] == len(labels)
    # (The browser's text of a header cell drops the token's leading space.)
    assert [h.strip() for h in shown["header"]] == [result.input_tokens[p].strip()
                                                    for p in result.positions]
    assert len(shown["cells"]) == len(labels) * len(result.positions)
    statistic = shown["statistic"]
    for i, label in enumerate(labels):
        for j, position in enumerate(result.positions):
            token, value, hover = shown["cells"][(label, int(position))]
            assert token == result.top_tokens[i, j, 0], (label, position)
            assert value == pytest.approx(float(getattr(result, statistic)[i, j]), abs=1e-6)
            for t in range(5):
                assert f"{result.top_tokens[i, j, t]!r} {result.top_probs[i, j, t]:.4f}" in hover


def test_the_heat_map_shows_the_clients_decode_of_a_typed_prompt(page, client):
    page.open("trajectory")
    page.wait(lambda: page.heatmaps(), "the first heat map")
    page.type_text("prompt", OTHER_PROMPT)
    expected = client.decode(OTHER_PROMPT, lens="logit", top_k=5)
    shown = page.wait(lambda: [h for h in page.heatmaps()
                               if len(h["header"]) == len(expected.positions)
                               and h["lens"] == "logit"], "the typed prompt's heat map")
    assert len(shown) == 1
    _expect_heatmap(shown[0], expected)
    assert shown[0]["statistic"] == "entropy"
    page.screenshot("trajectory_logit")


def test_switching_the_lens_and_comparing_two_side_by_side(page, client):
    page.open("trajectory")
    page.wait(lambda: page.heatmaps(), "the heat map")
    page.choose("trajectory_lens", "tuned")
    shown = page.wait(lambda: [h for h in page.heatmaps() if h["lens"] == "tuned"],
                      "the tuned lens's heat map")
    text = page.wait(lambda: page.find(".st-key-prompt textarea")[0].get_attribute("value"),
                     "the prompt")
    _expect_heatmap(shown[0], client.decode(text, lens="tuned", top_k=5))
    page.choose("trajectory_other", "logit")
    page.choose("trajectory_statistic", "forward_kl")
    both = page.wait(lambda: (lambda h: h if len(h) == 2 and all(
        x["statistic"] == "forward_kl" for x in h) else None)(page.heatmaps()),
        "two heat maps coloured by forward_kl")
    assert [h["lens"] for h in both] == ["tuned", "logit"]
    _expect_heatmap(both[0], client.decode(text, lens="tuned", top_k=5))
    _expect_heatmap(both[1], client.decode(text, lens="logit", top_k=5))
    page.screenshot("trajectory_side_by_side")


def test_generation_from_a_layer_streams_the_clients_tokens(page, client):
    page.open("generate")
    page.type_text("prompt", PROMPT)
    page.choose("generate_lens", "tuned")
    page.click("generate_go")
    caption = page.wait(lambda: re.search(r"finished: (\w+)", page.text()), "the generation")
    tokens = list(client.generate(PROMPT, lens="tuned", layer=3, max_new_tokens=24,
                                  greedy=True))
    expected = "".join(t.text for t in tokens)
    shown = page.inner_text(".st-key-generate_output")
    assert " ".join(shown.split()) == " ".join(expected.split())
    assert caption.group(1) == tokens[-1].finish_reason
    page.screenshot("generate")


def test_sae_features_per_token_equal_the_clients(page, client):
    page.open("sae")
    page.type_text("prompt", PROMPT)
    rows = page.wait(lambda: page.table("sae_features"), "the SAE features table")
    expected = client.encode_sae(PROMPT, saes=["res3-topk"], top_k=5)["res3-topk"]
    assert [r["token"] for r in rows] == expected.tokens
    for p, row in enumerate(rows):
        assert row["L0"] == int(expected.l0[p])
        assert row["FVU"] == pytest.approx(float(expected.fvu[p]), abs=1e-6)
        assert row["top features"] == ", ".join(f"{i} ({v:.3f})"
                                                for i, v in expected.features(p))
    assert f"{expected.fvu_total:.4f}" in page.text()
    page.screenshot("sae_features")


def test_node_attribution_ranks_the_clients_nodes_and_filters_them(page, client):
    page.open("attribution")
    page.type_text("prompt", PROMPT)
    page.click("attr_go")
    rows = page.wait(lambda: page.table("node_attribution"), "the node attribution table")
    expected = client.node_attribution(PROMPT, saes=["res3-topk"], top_n=50).to_dataframe()
    expected = expected.sort_values("abs_effect", ascending=False, kind="stable")
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected.itertuples()):
        assert (row["layer"], row["token_idx"], row["act_type"], row["feature"]) == \
            (want.layer, want.token_idx, want.act_type, want.feature)
        assert row["effect"] == pytest.approx(want.effect, rel=1e-5, abs=1e-7)
    assert page.find(".st-key-attr_chart .js-plotly-plot"), "the bar chart of effects"
    page.screenshot("node_attribution")
    page.choose("attr_kinds", "error")
    errors = page.wait(lambda: (lambda r: r if r and len(r) < len(rows) else None)(
        page.table("node_attribution")), "the table filtered to error nodes")
    assert {r["act_type"] for r in errors} == {"error"}
    assert len(errors) == int((expected.act_type == "error").sum())


def test_direct_logit_attribution_bars_sum_to_the_logit(page, client):
    page.open("dla")
    page.type_text("prompt", PROMPT)
    rows = page.wait(lambda: page.table("dla"), "the DLA table")
    tokens = client.tokenize(PROMPT)
    expected = client.layer_attribution(PROMPT, position=len(tokens) - 1)
    assert [r["component"] for r in rows] == expected.labels
    values = np.array([r["value"] for r in rows])
    np.testing.assert_allclose(values, expected.values, rtol=0, atol=1e-6)
    assert math.isclose(values.sum() + expected.bias, expected.logit, abs_tol=1e-3)
    assert page.find(".st-key-dla_chart .js-plotly-plot"), "the bar chart"
    page.screenshot("dla")


def test_a_training_job_is_started_watched_and_its_lens_served(page, client):
    page.open("jobs")
    page.type_text("train_name", "ui-lens", submit=False)
    page.type_text("train_steps", "8", submit=False)
    page.click("train_submit")
    submitted = page.wait(lambda: re.search(r"Submitted job (\S+)", page.text()),
                          "the submitted job's id").group(1)
    page.wait(lambda: any(r["id"] == submitted and r["state"] == "succeeded"
                          for r in page.table("jobs")), "the job to succeed", timeout=180)
    page.wait(lambda: "step 8 of 8" in page.text(), "the full progress bar")
    job = client.job(submitted)
    assert job.state == training_pb2.JOB_STATE_SUCCEEDED and job.kind == "train"
    assert "ui-lens" in [lens.name for lens in client.get_model().lenses]
    page.screenshot("jobs_trained")


def test_a_long_job_can_be_cancelled_from_the_page(page, client):
    page.open("jobs")
    page.type_text("train_name", "ui-long", submit=False)
    page.type_text("train_path", "long.jsonl", submit=False)
    page.type_text("train_steps", "15000", submit=False)
    page.click("train_submit")
    submitted = page.wait(lambda: re.search(r"Submitted job (\S+)", page.text()),
                          "the submitted job's id").group(1)
    page.wait(lambda: page.find(f".st-key-job_cancel_{submitted} button"), "the Cancel button")
    page.click(f"job_cancel_{submitted}")
    page.wait(lambda: any(r["id"] == submitted and r["state"] == "cancelled"
                          for r in page.table("jobs")), "the job to be cancelled")
    assert client.job(submitted).state == training_pb2.JOB_STATE_CANCELLED
    page.screenshot("jobs_cancelled")


def test_activation_patching_grid_equals_the_clients(page, client):
    page.open("patching")
    page.click("patch_go")
    page.wait(lambda: page.find(".st-key-patch_grid_resid_pre .js-plotly-plot"),
              "the resid_pre grid", timeout=180)
    clean = "And God said, Let there be light: and there was"
    corrupted = "And God said, Let there be dark: and there was"
    ids = [client.tokenize(t)[0].id for t in (" light", " darkness")]
    expected = client.activation_patching(
        clean, corrupted, lensd.attribution.metric("logit_diff", target=ids[0], foil=ids[1]),
        sweeps=["resid_pre"])
    assert f"clean metric {expected.clean_metric:.4f}" in page.text()
    for expander in page.find("[data-testid=stExpander] summary"):
        expander.click()
    rows = page.wait(lambda: page.table("patching_resid_pre"), "the grid as a table")
    frame = expected["resid_pre"].to_dataframe()
    assert len(rows) == len(frame)
    np.testing.assert_allclose([r["normalized"] for r in rows], frame.normalized, atol=1e-6)
    page.screenshot("patching")


def test_steering_shows_the_steered_and_unedited_continuations(page, client):
    page.open("steering")
    page.type_text("prompt", PROMPT)
    page.click("steer_go")
    steered = page.wait(lambda: page.inner_text(".st-key-steer_steered"), "the continuations")
    unedited = page.inner_text(".st-key-steer_unedited")
    # The page's defaults: " light" minus " darkness" entering block 3, x1, 20 greedy tokens.
    hook = "blocks.3.hook_resid_pre"
    width = int(client.get_model().d_model)
    vector = np.subtract(*[client.activations(t, [hook], torch=False)[hook].reshape(-1, width)[-1]
                           for t in (" light", " darkness")])
    tokens = list(client.generate(PROMPT, max_new_tokens=20, greedy=True,
                                  interventions=[lensd.steer(hook, vector, 1.0)],
                                  also_unedited=True))
    expected_steered = PROMPT + "".join(t.text for t in tokens)
    assert " ".join(steered.split()) == " ".join(f"Steered {expected_steered}".split())
    assert " ".join(unedited.split()) == \
        " ".join(f"Unedited {PROMPT}{tokens[-1].unedited_text}".split())
    page.screenshot("steering")


def test_server_errors_are_messages_not_stack_traces(page, client):
    page.open("dla")
    page.type_text("prompt", PROMPT)
    page.type_text("dla_target", " light and darkness")
    message = page.wait(lambda: re.search(r"target: .* is \d+ tokens", page.text()),
                        "the target's error")
    assert message
    page.screenshot("error_target")
    page.open("patching")
    page.type_text("patch_corrupted", "And God said")
    page.click("patch_go")
    refused = page.wait(lambda: re.search(r"ActivationPatching: INVALID_ARGUMENT: (.*)",
                                          page.text()), "the server's refusal")
    with pytest.raises(lensd.LensdError) as error:
        client.activation_patching(
            "And God said, Let there be light: and there was", "And God said",
            lensd.attribution.metric("logit_diff", target=client.tokenize(" light")[0].id,
                                     foil=client.tokenize(" darkness")[0].id))
    assert refused.group(1) == error.value.message
    page.screenshot("error_server")
    page.open("trajectory")
    page.type_text("token", "not-a-token")
    page.wait(lambda: "UNAUTHENTICATED" in page.text(), "the refused token's message")
    assert "Traceback" not in page.driver.page_source
    page.screenshot("error_token")
