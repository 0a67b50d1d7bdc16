"""SAE features per token: the strongest features at each position with their activations, the
L0 and the fraction of variance unexplained, and one feature's activation across the prompt."""
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from lensd_ui import tables
from lensd_ui.connection import call, session
from lensd_ui.prompt import prompt_input


def render() -> None:
    s = session()
    st.header("SAE features")
    saes = s.saes()
    if not saes:
        st.info(f"No SAE is attached to {s.name} (lensctl sae load, admin).")
        return
    text = prompt_input()
    left, right = st.columns(2)
    sae = left.selectbox("SAE", saes, key="sae_name")
    top_k = right.slider("Features per token", 1, 32, 5, key="sae_top_k")
    info = next(x for x in s.model.saes if x.name == sae)
    st.caption(f"{info.format} {info.architecture} SAE at {info.hook_point}: d_in {info.d_in}, "
               f"{info.d_sae} features")
    if not text:
        st.info("Type a prompt.")
        return
    encoding = call("EncodeSae", s.client.encode_sae, text, saes=[sae], model=s.name,
                    top_k=top_k)
    features = encoding[sae]
    total, mean_l0 = st.columns(2)
    total.metric("FVU (whole prompt)", f"{features.fvu_total:.4f}")
    mean_l0.metric("Mean L0", f"{features.l0.mean():.1f}" if len(features.l0) else "-")
    rows = []
    for p, token in enumerate(features.tokens):
        top = features.features(p)
        rows.append({"position": p, "token": token, "L0": int(features.l0[p]),
                     "FVU": float(features.fvu[p]),
                     "top features": ", ".join(f"{i} ({v:.3f})" for i, v in top)})
    tables.show(pd.DataFrame(rows), "sae_features")
    frame = features.to_dataframe()
    if frame.empty:
        return
    ranked = (frame.groupby("feature")["activation"].max().sort_values(ascending=False).index)
    feature = st.selectbox("Feature across the prompt", [int(f) for f in ranked],
                           key="sae_feature")
    dense = features.dense(int(info.d_sae))[:, feature]
    figure = go.Figure(go.Bar(x=[f"{i}: {t!r}" for i, t in enumerate(features.tokens)], y=dense))
    figure.update_layout(title=f"feature {feature} of {sae}", xaxis_title="token",
                         yaxis_title="activation", height=360)
    st.plotly_chart(figure, key="sae_chart")
