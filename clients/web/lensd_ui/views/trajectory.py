"""Prediction trajectory: per-layer decoding of a prompt through one lens, or two side by side on
one colour scale (tuned-lens's PredictionTrajectory heat map)."""
import streamlit as st

from lensd_ui import heatmap
from lensd_ui.connection import call, session
from lensd_ui.prompt import prompt_input

STATISTICS = ["entropy", "forward_kl", "cross_entropy", "max_probability", "target_rank"]


def render() -> None:
    s = session()
    st.header("Prediction trajectory")
    text = prompt_input()
    lenses = s.lenses()
    left, middle, right = st.columns(3)
    lens = left.selectbox("Lens", lenses, key="trajectory_lens")
    other = middle.selectbox("Side by side with", ["(none)"] + [x for x in lenses if x != lens],
                             key="trajectory_other")
    statistic = right.selectbox("Colour by", STATISTICS, key="trajectory_statistic",
                                help="cross_entropy and target_rank score the next input token")
    k = st.slider("Top-k on hover", 1, 10, 5, key="trajectory_k")
    if not text:
        st.info("Type a prompt.")
        return
    shown = [lens] + ([other] if other != "(none)" else [])
    results = [call(f"Decode with the {name} lens", s.client.decode, text, lens=name,
                    model=s.name, top_k=k) for name in shown]
    scale = heatmap.value_range(results, statistic)
    columns = st.columns(len(results))
    for column, result in zip(columns, results):
        with column:
            st.html(heatmap.table(result, statistic, k, scale))
    with st.expander("As a table"):
        for result in results:
            st.caption(f"{result.lens} lens")
            st.dataframe(result.to_dataframe(), hide_index=True)
