"""lensd's web UI: a Streamlit app on the Python client (clients/python). Start it with
deploy/web_ui.sh; the views live in lensd_ui.views, one module each."""
