#!/usr/bin/env bash
# Checks that the engine compiles against a PyTorch 2.x libtorch (the build's other target) on a
# machine without CUDA: fetches the torch wheel from PyPI (headers only are used; its CMake
# config needs the CUDA toolkit) and runs the compiler in syntax-only mode over every file that
# includes torch. Not part of tests/run.sh (a 540 MB download); run it after touching the engine.
#   bash tests/torch2_syntax_check.sh [torch version, default 2.15.0]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=${1:-2.15.0}
work=${TMPDIR:-/tmp}/lensd-torch-$version
if [ ! -d "$work/torch/include" ]; then
  mkdir -p "$work"
  "$root/.venv/bin/pip" download -q --no-deps -d "$work" "torch==$version"
  (cd "$work" && python3 -m zipfile -e torch-"$version"-*.whl . >/dev/null)
fi
failed=0
for f in "$root"/core/engine/*.cc "$root"/core/engine/tools/*.cc "$root"/tests/bench/*.cc; do
  if ! g++ -std=c++20 -fsyntax-only -I"$root" -DLENSD_TEST_SOURCE_DIR='""' \
      -DLENSD_TEST_BINARY_DIR='""' -DLENSD_LOAD_PEAK_TOOL='""' \
      -isystem "$work/torch/include" -isystem "$work/torch/include/torch/csrc/api/include" "$f"; then
    echo "FAILED: $f"
    failed=1
  fi
done
[ "$failed" = 0 ] && echo "the engine compiles against torch $version"
exit "$failed"
