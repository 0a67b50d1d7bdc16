"""A UI session's connection to lensd and how its calls fail.

The server address and bearer token come from the sidebar, defaulting to $LENSD_ADDRESS and
$LENSD_TOKEN. One lensd.Client per (address, token) is shared by every browser session of this UI
process (a gRPC channel is thread-safe). A call that the server refuses is shown as a message with
its gRPC code and the server's text, and stops the view there: never a stack trace."""
import os
from typing import Callable, Iterator, List, Optional, TypeVar

import grpc
import streamlit as st

import lensd
from lensd.v1 import models_pb2

T = TypeVar("T")

# Every view's calls wait at most this long (seconds) unless the view says otherwise.
DEFAULT_TIMEOUT = 120.0


@st.cache_resource(show_spinner=False, max_entries=16)
def _client(address: str, token: str) -> lensd.Client:
    return lensd.Client(address, token=token, timeout=DEFAULT_TIMEOUT, retries=2, model="")


def show_error(what: str, error: Exception) -> None:
    """An error as the page shows it: the code and the server's message."""
    if isinstance(error, lensd.LensdError):
        st.error(f"{what}: {error.code.name}: {error.message}", icon=":material/error:")
    else:
        st.error(f"{what}: {error}", icon=":material/error:")


def call(what: str, fn: Callable[..., T], *args, **kwargs) -> T:
    """fn(*args, **kwargs); on a refused call (or a request the client rejects) shows the error
    and stops this run of the page."""
    try:
        return fn(*args, **kwargs)
    except (lensd.LensdError, ValueError) as error:
        show_error(what, error)
        st.stop()
        raise AssertionError("unreachable") from error


def stream(what: str, items: Iterator[T]) -> Iterator[T]:
    """Yields from a server stream; an error mid-stream is shown and ends the stream."""
    try:
        yield from items
    except (lensd.LensdError, ValueError) as error:
        show_error(what, error)


class Session:
    """What every view needs: the client and the chosen model's description."""

    def __init__(self, client: lensd.Client, model: models_pb2.ModelInfo):
        self.client = client
        self.model = model

    @property
    def name(self) -> str:
        return self.model.name

    def lenses(self) -> List[str]:
        """"logit" first, then the model's other loaded lenses (GetModel lists the logit lens
        too)."""
        return ["logit"] + [lens.name for lens in self.model.lenses if lens.name != "logit"]

    def saes(self) -> List[str]:
        return [sae.name for sae in self.model.saes]


def sidebar() -> Optional[Session]:
    """The connection form and the model picker; None (with a message) when there is no usable
    connection or no loaded model."""
    st.sidebar.title("lensd")
    address = st.sidebar.text_input("Server address", os.environ.get("LENSD_ADDRESS",
                                                                     "127.0.0.1:50051"),
                                    key="address")
    token = st.sidebar.text_input("Token", os.environ.get("LENSD_TOKEN", ""), type="password",
                                  key="token", help="Bearer token; empty for a loopback server "
                                  "without auth")
    client = _client(address.strip(), token.strip())
    try:
        info = client.server_info()
        models = client.models()
    except lensd.LensdError as error:
        show_error(f"Cannot use the server at {address}", error)
        if error.code == grpc.StatusCode.UNAVAILABLE:
            st.info("Check the address, and that lensd is running.")
        return None
    st.sidebar.caption(f"lensd {info.version} · tenant {info.tenant or '-'} ({info.role or '-'})")
    ready = [m for m in models if m.state == models_pb2.MODEL_STATE_READY]
    if not ready:
        st.warning("No model is loaded on this server: load one (lensctl load <model>, admin).")
        return None
    names = [m.name for m in ready]
    name = st.sidebar.selectbox("Model", names, key="model")
    model = call(f"GetModel {name}", client.get_model, name)
    st.sidebar.caption(f"{model.architecture}, {model.num_layers} layers, d_model "
                       f"{model.d_model}, {model.dtype} on {model.device}")
    return Session(client, model)


def session() -> Session:
    """The current page's session (set by the app before the page runs)."""
    return st.session_state["_lensd_session"]
