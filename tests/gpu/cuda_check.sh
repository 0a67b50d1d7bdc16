#!/usr/bin/env bash
# Builds the engine and its CUDA tests (core/engine/model/cuda_test.cc: logits in float32, bfloat16 and
# float16 against the CPU, KV-cache decoding, lens training in float32 and under bfloat16 autocast,
# lens evaluation) against the PyTorch of a GPU machine, and runs them. Not part of tests/run.sh:
# CI has no GPU (there cuda_test builds against the torch wheel in .venv and reports itself
# skipped). For a machine with CUDA, PyTorch (python3 -c "import torch") and a C++20 compiler; the
# headers and libraries of abseil, nlohmann-json, GoogleTest and zlib come from the system, or
# from Debian 12 packages unpacked from the .deb files in $LENSD_DEPS:
#   apt-get download libabsl-dev libabsl20220623 nlohmann-json3-dev libgtest-dev libgmock-dev \
#     zlib1g-dev        # in a folder, then:
#   LENSD_DEPS=<that folder> bash tests/gpu/cuda_check.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=${TMPDIR:-/tmp}/lensd-cuda-check
mkdir -p "$work/obj"
python=${PYTHON:-python3}
torch=$("$python" -c "import os, torch; print(os.path.dirname(torch.__file__))")
abi=$("$python" -c "import torch; print(int(torch.compiled_with_cxx11_abi()))")
echo "torch $("$python" -c "import torch; print(torch.__version__, torch.version.cuda)") at $torch"
include=(-isystem "$torch/include" -isystem "$torch/include/torch/csrc/api/include")
libs=(-L"$torch/lib" -Wl,-rpath,"$torch/lib")
for cuda in /usr/local/cuda /usr/local/cuda-*; do
  if [ -f "$cuda/include/cuda_runtime_api.h" ]; then
    include+=(-isystem "$cuda/include")
    libs+=(-L"$cuda/lib64" -Wl,-rpath,"$cuda/lib64" -lcudart)
    break
  fi
done
if [ -n "${LENSD_DEPS:-}" ]; then
  for deb in "$LENSD_DEPS"/*.deb; do dpkg -x "$deb" "$work/deps"; done
  include+=(-isystem "$work/deps/usr/include")
  multiarch="$work/deps/usr/lib/x86_64-linux-gnu"
  libs+=(-L"$multiarch" -Wl,-rpath,"$multiarch" -Wl,--disable-new-dtags)  # RPATH: transitive too
  absl_dir=$multiarch
else
  absl_dir=$(dirname "$(find /usr/lib /usr/local/lib -name 'libabsl_base.so' | head -1)")
fi
flags=(-std=c++20 -O2 -fPIC -D_GLIBCXX_USE_CXX11_ABI="$abi" -DLENSD_TEST_SOURCE_DIR="\"$root\""
       -DLENSD_TEST_BINARY_DIR="\"$work\"" -I"$root" "${include[@]}")
sources=(core/json_fields.cc core/lens_types.cc core/durable_file.cc core/training_spec.cc
         core/eval_spec.cc core/engine/test_util.cc core/engine/model/cuda_test.cc)
for f in "$root"/core/engine/*/*.cc; do
  case $(basename "$f") in
    *_test.cc | served_model.cc | served_batch.cc | lens_table.cc | load_peak.cc) ;;  # the server's
    *) sources+=("${f#"$root"/}") ;;
  esac
done
printf '%s\n' "${sources[@]}" | xargs -P "$(nproc)" -I{} sh -c \
  'o="$0/obj/$(echo {} | tr / _).o"; [ "$o" -nt "$1/{}" ] || g++ "$@" -c "$1/{}" -o "$o"' \
  "$work" "$root" "${flags[@]}"
absl=$(find "$absl_dir" -maxdepth 1 -name 'libabsl_*.so' -printf '-l%f ' | sed 's/-llib/-l/g; s/\.so//g')
# shellcheck disable=SC2086
g++ -o "$work/cuda_test" "$work"/obj/*.o "${libs[@]}" -Wl,--no-as-needed -ltorch -ltorch_cuda \
  -ltorch_cpu -lc10 -lc10_cuda -Wl,--as-needed $absl -lgtest_main -lgtest -lz -lpthread
"$work/cuda_test"
