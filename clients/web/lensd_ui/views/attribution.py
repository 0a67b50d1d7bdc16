"""token-trace's view of node attribution: which SAE features and error nodes move a metric of the
prediction most, as a ranked table and a bar chart of effects, filtered by layer, position and
node type."""
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from lensd_ui import tables
from lensd_ui.connection import call, session
from lensd_ui.prompt import prompt_input, single_token

METRICS = {"loss of the next token": "loss", "logit difference (target - foil)": "logit_diff"}
METHODS = ["attribution_patching", "integrated_gradients", "exact"]


def _node_label(row) -> str:
    what = f"f{row.feature}" if row.act_type == "feature" else row.act_type
    return f"{row.module_name} {what} @{row.token_idx}:{row.token_str!r}"


def render() -> None:
    s = session()
    st.header("Node attribution")
    if not s.saes():
        st.info(f"No SAE is attached to {s.name}: node attribution runs over SAE features.")
        return
    text = prompt_input()
    left, middle, right = st.columns(3)
    saes = left.multiselect("SAEs", s.saes(), default=s.saes(), key="attr_saes")
    metric = middle.selectbox("Metric", list(METRICS), key="attr_metric")
    top_n = right.number_input("Nodes kept", 5, 1000, 50, key="attr_top_n")
    method = left.selectbox("Method", METHODS, key="attr_method",
                            help="attribution patching (one backward pass), integrated "
                            "gradients, or exact (one patched run per node)")
    options = {}
    if METRICS[metric] == "logit_diff":
        target, foil = st.columns(2)
        options["target"] = target.text_input("Target token", " light", key="attr_target")
        options["foil"] = foil.text_input("Foil token", " darkness", key="attr_foil")
    key = (s.name, text, tuple(saes), metric, method, top_n, str(options))
    if st.button("Attribute", type="primary", key="attr_go"):
        if not text or not saes:
            st.info("Type a prompt and choose an SAE.")
            return
        ids = {field: single_token(s.client, s.name, value, field)
               for field, value in options.items()}
        with st.spinner("Attributing..."):
            st.session_state["attr_result"] = call(
                "NodeAttribution", s.client.node_attribution, text, saes=saes, model=s.name,
                metric_kind=METRICS[metric], method=method, top_n=int(top_n), **ids)
        st.session_state["attr_key"] = key
    result = st.session_state.get("attr_result")
    if result is None:
        return
    if st.session_state.get("attr_key") != key:
        st.caption("The inputs changed: click Attribute to update the table.")
    st.caption(f"metric {result.metric:.4f} (target {result.target[1]!r}); sum of the "
               f"{result.nodes_considered} nodes' effects {result.sum_of_effects:.4f}")
    frame = result.to_dataframe()
    if frame.empty:
        st.info("No node passed the filters.")
        return
    a, b, c = st.columns(3)
    layers = a.multiselect("Layers", sorted(frame.layer.unique()), key="attr_layers")
    positions = b.multiselect("Positions", sorted(frame.token_idx.unique()), key="attr_positions")
    kinds = c.multiselect("Node types", sorted(frame.act_type.unique()), key="attr_kinds")
    shown = frame
    if layers:
        shown = shown[shown.layer.isin(layers)]
    if positions:
        shown = shown[shown.token_idx.isin(positions)]
    if kinds:
        shown = shown[shown.act_type.isin(kinds)]
    shown = shown.sort_values("abs_effect", ascending=False)
    tables.show(shown[["layer", "token_idx", "token_str", "act_type", "feature", "value",
                       "grad", "effect", "sae"]], "node_attribution")
    bars = shown.head(25)
    figure = go.Figure(go.Bar(x=bars.effect, y=[_node_label(r) for r in bars.itertuples()],
                              orientation="h",
                              marker_color=["#b2182b" if e > 0 else "#2166ac"
                                            for e in bars.effect]))
    figure.update_layout(title=f"effect on the metric ({result.sign})",
                         height=max(300, 22 * len(bars)), yaxis={"autorange": "reversed"},
                         margin={"l": 10})
    st.plotly_chart(figure, key="attr_chart")
    st.download_button("Download CSV", pd.DataFrame(shown).to_csv(index=False),
                       "node_attribution.csv", key="attr_csv")
