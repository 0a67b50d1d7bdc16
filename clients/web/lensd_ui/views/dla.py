"""Direct logit attribution: how much each component (embeddings, each attention layer or head,
each MLP) writes directly into one logit at one position, the final norm's scale frozen; the bars
plus the bias sum to the logit."""
import plotly.graph_objects as go
import streamlit as st

from lensd_ui import tables
from lensd_ui.connection import call, session
from lensd_ui.prompt import prompt_input, single_token, token_labels


def render() -> None:
    s = session()
    st.header("Direct logit attribution")
    text = prompt_input()
    if not text:
        st.info("Type a prompt.")
        return
    tokens = call("Tokenize", s.client.tokenize, text, model=s.name)
    if not tokens:
        st.info("The prompt has no tokens.")
        return
    labels = token_labels([t.text for t in tokens])
    left, middle, right = st.columns(3)
    position = left.selectbox("Position", range(len(labels)), index=len(labels) - 1,
                              format_func=lambda i: labels[i], key="dla_position")
    target_text = middle.text_input("Target token", "", key="dla_target",
                                    help="Empty: the model's top prediction")
    per_head = right.checkbox("Split attention into heads", False, key="dla_heads")
    options = {"position": int(position), "per_head": per_head}
    if target_text:
        options["target"] = single_token(s.client, s.name, target_text, "target")
    result = call("LayerAttribution", s.client.layer_attribution, text, model=s.name, **options)
    total = float(result.values.sum() + result.bias)
    st.caption(f"logit of {result.target[1]!r} at position {result.position}: "
               f"{result.logit:.4f} = components {result.values.sum():.4f} + bias "
               f"{result.bias:.4f} (sum {total:.4f})")
    figure = go.Figure(go.Bar(x=result.labels, y=result.values,
                              marker_color=["#b2182b" if v > 0 else "#2166ac"
                                            for v in result.values]))
    figure.update_layout(title=f"direct contribution to the logit of {result.target[1]!r}",
                         xaxis_title="component", yaxis_title="logit", height=420)
    st.plotly_chart(figure, key="dla_chart")
    tables.show(result.to_dataframe(), "dla")
