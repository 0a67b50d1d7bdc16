"""Steering: add a direction to the residual stream while the model generates (ActAdd: the
difference of the activations of two prompts at one layer, times a coefficient), and read the
steered continuation beside the unedited one (same seed)."""
import numpy as np
import streamlit as st

import lensd
from lensd_ui.connection import call, session, stream
from lensd_ui.prompt import prompt_input


def _direction(s, layer: int, positive: str, negative: str) -> np.ndarray:
    """The last-token activation of `positive` minus that of `negative` entering block `layer`."""
    hook = f"blocks.{layer}.hook_resid_pre"
    values = []
    for text in (positive, negative):
        arrays = call("GetActivations", s.client.activations, text, [hook], model=s.name,
                      torch=False)
        values.append(np.asarray(arrays[hook]).reshape(-1, int(s.model.d_model))[-1])
    return values[0] - values[1]


def render() -> None:
    s = session()
    st.header("Steering")
    text = prompt_input()
    layers = int(s.model.num_layers)
    a, b = st.columns(2)
    positive = a.text_input("Steer towards", " light", key="steer_positive")
    negative = b.text_input("Away from", " darkness", key="steer_negative")
    c, d, e = st.columns(3)
    layer = c.slider("Layer", 0, layers - 1, layers // 2, key="steer_layer",
                     help="The vector is added to the stream entering this block")
    coefficient = d.number_input("Coefficient", -100.0, 100.0, 1.0, step=0.25, key="steer_coef")
    max_new = e.number_input("New tokens", 1, 256, 20, key="steer_max")
    if not st.button("Generate steered", type="primary", key="steer_go"):
        return
    if not text or not positive or not negative:
        st.info("Type a prompt and the two texts that define the direction.")
        return
    vector = _direction(s, layer, positive, negative)
    edit = lensd.steer(f"blocks.{layer}.hook_resid_pre", vector, coefficient)
    last, pieces = None, []
    for token in stream("Generate", s.client.generate(
            text, model=s.name, max_new_tokens=int(max_new), greedy=True,
            interventions=[edit], also_unedited=True, timeout=600)):
        last = token
        pieces.append(token.text)
    if last is None:
        return
    left, right = st.columns(2)
    with left.container(border=True, key="steer_steered"):
        st.markdown("**Steered**")
        st.text(text + "".join(pieces))
    with right.container(border=True, key="steer_unedited"):
        st.markdown("**Unedited**")
        st.text(text + last.unedited_text)
    st.caption(f"|vector| = {np.linalg.norm(vector):.3f} at blocks.{layer}.hook_resid_pre, "
               f"x {coefficient}")
