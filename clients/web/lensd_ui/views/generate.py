"""Generation read out from a lens at a chosen layer, streamed token by token as the server sends
them; Stop (or any other click) cancels the stream on the server."""
import streamlit as st

from lensd_ui.connection import session, stream
from lensd_ui.prompt import prompt_input


def render() -> None:
    s = session()
    st.header("Generate from a layer")
    text = prompt_input()
    layers = int(s.model.num_layers)
    left, middle, right = st.columns(3)
    lens = left.selectbox("Lens", s.lenses(), key="generate_lens")
    layer = middle.slider("Read out at layer", 0, layers, layers // 2, key="generate_layer",
                          help=f"{layers}: the model's own output")
    max_new = right.number_input("New tokens", 1, 512, 24, key="generate_max")
    greedy = left.checkbox("Greedy", True, key="generate_greedy")
    temperature = middle.number_input("Temperature", 0.05, 5.0, 1.0, step=0.05,
                                      key="generate_temperature", disabled=greedy)
    seed = right.number_input("Seed", 0, 2**31 - 1, 0, key="generate_seed")
    start, stop = st.columns([1, 6])
    go = start.button("Generate", type="primary", key="generate_go")
    stop.button("Stop", key="generate_stop", help="Cancels the generation on the server")
    if not go:
        return
    if not text:
        st.info("Type a prompt.")
        return
    tokens = s.client.generate(text, lens=lens, layer=None if layer == layers else layer,
                               model=s.name, max_new_tokens=int(max_new), greedy=greedy,
                               temperature=float(temperature), seed=int(seed),
                               timeout=600)
    finish = {}

    def pieces():
        for token in stream("Generate", tokens):
            if token.finished:
                finish["reason"] = token.finish_reason
            yield token.text

    st.markdown(f"**{text}**")
    with st.container(border=True, key="generate_output"):
        generated = st.write_stream(pieces())
    st.caption(f"{lens} lens at layer {layer} of {layers}; finished: "
               f"{finish.get('reason') or 'stopped'}")
    st.session_state["generate_last"] = generated
