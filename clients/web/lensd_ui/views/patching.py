"""Activation patching grids (TransformerLens's patching sweeps, run on the server): a clean and a
corrupted prompt of one length, a metric, sweeps by layer and position; a progress bar while the
patched runs go, Stop to cancel them, then one heat map per sweep."""
import streamlit as st

from lensd import attribution
from lensd_ui import tables
from lensd_ui.connection import call, session
from lensd_ui.prompt import single_token

SWEEPS = ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z_all_pos",
          "pattern_all_pos", "z", "q", "k", "v", "pattern"]


def render() -> None:
    s = session()
    st.header("Activation patching")
    a, b = st.columns(2)
    clean = a.text_input("Clean prompt", "And God said, Let there be light: and there was",
                         key="patch_clean")
    corrupted = b.text_input("Corrupted prompt",
                             "And God said, Let there be dark: and there was",
                             key="patch_corrupted", help="Same number of tokens as the clean one")
    c, d, e = st.columns(3)
    sweeps = c.multiselect("Sweeps", SWEEPS, default=["resid_pre"], key="patch_sweeps")
    target = d.text_input("Target token", " light", key="patch_target")
    foil = e.text_input("Foil token", " darkness", key="patch_foil",
                        help="The metric is logit(target) - logit(foil) at the last position")
    direction = c.radio("Direction", ["denoising", "noising"], horizontal=True,
                        key="patch_direction")
    start, stop = st.columns([1, 6])
    go = start.button("Run sweeps", type="primary", key="patch_go")
    stop.button("Stop", key="patch_stop", help="Cancels the sweeps on the server")
    if go:
        metric = attribution.metric(
            "logit_diff", target=single_token(s.client, s.name, target, "target"),
            foil=single_token(s.client, s.name, foil, "foil"))
        bar = st.progress(0.0, text="patched runs")

        def progress(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=f"{done} of {total} patched runs")

        st.session_state["patch_result"] = call(
            "ActivationPatching", s.client.activation_patching, clean, corrupted, metric,
            sweeps=sweeps, direction=direction, model=s.name, progress=progress, timeout=3600)
    result = st.session_state.get("patch_result")
    if result is None:
        return
    st.caption(f"clean metric {result.clean_metric:.4f}, corrupted {result.corrupted_metric:.4f};"
               f" {result.patched_runs} patched runs in {result.forward_passes} batched passes")
    heads = int(s.model.num_heads)
    for name, grid in result.grids.items():
        head = None
        if grid.dims == ["layer", "position", "head"]:
            head = st.slider(f"{name}: head", 0, heads - 1, 0, key=f"patch_head_{name}")
        st.plotly_chart(result.heatmap(name, head=head), key=f"patch_grid_{name}")
        with st.expander(f"{name} as a table"):
            tables.show(grid.to_dataframe(), f"patching_{name}", max_rows=2000)
