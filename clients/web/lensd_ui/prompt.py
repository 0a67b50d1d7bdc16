"""The prompt every view starts from: one text shared by the views of a browser session (typing
it on one view keeps it on the others)."""
import streamlit as st

from lensd_ui.connection import call

DEFAULT_PROMPT = "And God said, Let there be light: and there was"


def prompt_input(label: str = "Prompt", key: str = "prompt") -> str:
    """A text area whose value persists across views; returns the text (may be empty)."""
    stored = f"_kept_{key}"
    if stored not in st.session_state:
        st.session_state[stored] = DEFAULT_PROMPT
    if key not in st.session_state:
        st.session_state[key] = st.session_state[stored]

    def keep():
        st.session_state[stored] = st.session_state[key]

    return st.text_area(label, key=key, on_change=keep, height=80,
                        help="Press Ctrl+Enter (or click outside) to apply")


def token_labels(tokens) -> list:
    """"i: 'text'" labels of a prompt's tokens, for pickers."""
    return [f"{i}: {t!r}" for i, t in enumerate(tokens)]


def single_token(client, model: str, text: str, field: str) -> int:
    """The id of `text` as one token of `model`; shows an error and stops the page when it is
    not exactly one token."""
    tokens = call("Tokenize", client.tokenize, text, model=model)
    if len(tokens) != 1:
        pieces = ", ".join(repr(t.text) for t in tokens) or "none"
        st.error(f"{field}: {text!r} is {len(tokens)} tokens ({pieces}); give exactly one token")
        st.stop()
    return int(tokens[0].id)
