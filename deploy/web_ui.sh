#!/usr/bin/env bash
# Starts lensd's web UI (clients/web, a Streamlit app on the Python client) on loopback:
#   bash deploy/web_ui.sh [--port 8501] [--address 127.0.0.1]
# The lensd server and token come from $LENSD_ADDRESS and $LENSD_TOKEN (or are typed into the
# sidebar). Installs what is missing first (deploy/setup.sh: the venv with Streamlit, and the
# Python client built from proto/ into .tools/python-client). Prints the URL, then serves until
# stopped.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
port=8501
address=127.0.0.1
while [ $# -gt 0 ]; do
  case $1 in
    --port) port=$2; shift 2 ;;
    --address) address=$2; shift 2 ;;
    *) echo "usage: deploy/web_ui.sh [--port N] [--address HOST]" >&2; exit 2 ;;
  esac
done
[ -n "${LENSD_SKIP_SETUP:-}" ] || bash "$root/deploy/setup.sh" >&2
source "$root/deploy/web_ui_env.sh"
web_ui_install_client
echo "lensd web UI: http://$address:$port (server ${LENSD_ADDRESS:-127.0.0.1:50051})"
exec env PYTHONPATH="$web_ui_pythonpath" "$root/.venv/bin/python" -m streamlit run \
  "$root/clients/web/lensd_ui/app.py" "${web_ui_flags[@]}" \
  --server.port="$port" --server.address="$address"
