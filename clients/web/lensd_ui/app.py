"""lensd's web UI: `streamlit run clients/web/lensd_ui/app.py` (deploy/web_ui.sh does it with the
right options). The sidebar holds the connection (address and token, from $LENSD_ADDRESS and
$LENSD_TOKEN by default) and the model; each view is a page of its own, so only the view on
screen calls the server."""
import pathlib
import sys

import streamlit as st

# Run as a script by Streamlit: make the package importable from its folder.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from lensd_ui import connection  # noqa: E402
from lensd_ui.views import (attribution, dla, generate, jobs, patching, sae,  # noqa: E402
                            steering, trajectory)

PAGES = [
    (trajectory.render, "Prediction trajectory", "trajectory", ":material/grid_on:"),
    (generate.render, "Generate", "generate", ":material/text_fields:"),
    (sae.render, "SAE features", "sae", ":material/scatter_plot:"),
    (attribution.render, "Node attribution", "attribution", ":material/account_tree:"),
    (dla.render, "Direct logit attribution", "dla", ":material/bar_chart:"),
    (steering.render, "Steering", "steering", ":material/alt_route:"),
    (patching.render, "Activation patching", "patching", ":material/healing:"),
    (jobs.render, "Jobs", "jobs", ":material/work:"),
]


def main() -> None:
    st.set_page_config(page_title="lensd", layout="wide")
    pages = [st.Page(render, title=title, url_path=path, icon=icon, default=i == 0)
             for i, (render, title, path, icon) in enumerate(PAGES)]
    page = st.navigation(pages)
    current = connection.sidebar()
    if current is None:
        return
    st.session_state["_lensd_session"] = current
    page.run()


main()
