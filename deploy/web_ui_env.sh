# Sourced by deploy/web_ui.sh and deploy/demo.sh: how the web UI runs.
#   web_ui_flags        Streamlit's options: headless, no usage statistics (no network), server
#                       errors shown as messages without details, no file watcher
#   web_ui_install_client  builds the Python client (stubs generated from proto/) into
#                       .tools/python-client when it is missing or older than its sources
#   web_ui_pythonpath   where the UI finds the client
web_ui_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
web_ui_pythonpath="$web_ui_root/.tools/python-client"
web_ui_flags=(--server.headless=true --browser.gatherUsageStats=false
              --client.showErrorDetails=none --client.toolbarMode=minimal
              --server.fileWatcherType=none --global.developmentMode=false
              --theme.base=light)

web_ui_install_client() {
  local stamp="$web_ui_pythonpath/.sources.sha256" want
  want=$(cd "$web_ui_root" && find proto clients/python -type f \( -name '*.proto' -o -name '*.py' \
         -o -name '*.toml' \) -not -path '*/tests/*' | sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "web UI: building the Python client into $web_ui_pythonpath" >&2
    rm -rf "$web_ui_pythonpath"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$web_ui_root/.venv/bin/python" -m pip install --quiet \
      --no-build-isolation --no-deps --target "$web_ui_pythonpath" "$web_ui_root/clients/python" >&2
    echo "$want" > "$stamp"
  fi
}
