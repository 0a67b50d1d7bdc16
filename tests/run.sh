#!/usr/bin/env bash
# Runs every test of lensd on a fresh Debian 12 machine (as root, or as a user with sudo):
#   1. deploy/setup.sh installs what is missing (Debian packages, the reference-library venv);
#   2. builds everything with gcc and warnings as errors, and the fuzz targets with clang;
#   3. checks formatting (clang-format) and lints (clang-tidy 22 from .venv) every first-party C++
#      file;
#   4. runs CTest: unit tests, parity tests against transformers and tokenizers (their reference
#      outputs are produced in the same run), 20 seconds of each fuzz target, end-to-end tests of
#      the server and the clients (three replicas sharing a PostgreSQL job store behind HAProxy
#      among them), the web UI in chromium, and the deployment files' checks;
#   5. builds lensd with clang, AddressSanitizer and UndefinedBehaviorSanitizer, and runs the
#      in-process service tests and the server's end-to-end tests against it;
#   6. builds the serving core (scheduler, model registry, tenant limiter, job manager and stores)
#      with clang and ThreadSanitizer, Abseil compiled from source alongside, and runs its tests.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
jobs=$(nproc)
started=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - started ))s)"; }

step "setup"
bash deploy/setup.sh

step "fuzz target (clang, libFuzzer)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DLENSD_FUZZ=ON -DLENSD_BUILD_TESTS=OFF >/dev/null
ninja -C build-fuzz safetensors_header_fuzz torch_state_dict_fuzz pickle_fuzz request_fuzz

step "build (gcc, -Werror)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLENSD_WERROR=ON \
  -DLENSD_FUZZ_DIR="$root/build-fuzz/tests/fuzz" >/dev/null
ninja -C build

step "clang-format"
sources() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -- 'core/*.cc' 'core/*.h' 'server/*.cc' 'server/*.h' 'clients/cli/*.cc' \
      'clients/cli/*.h' 'tests/*.cc' 'tests/*.h'
  else
    find core server clients/cli tests -name '*.cc' -o -name '*.h' 2>/dev/null
  fi
}
sources | xargs clang-format --dry-run --Werror

step "clang-tidy"
cmake -S . -B build-tidy -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_DISABLE_PRECOMPILE_HEADERS=ON >/dev/null
ninja -C build-tidy lensd_proto_sources >/dev/null
.venv/bin/run-clang-tidy.py -clang-tidy-binary .venv/bin/clang-tidy -p build-tidy -j "$jobs" -quiet \
  "$root/(core|server|clients/cli|tests)/.*\.cc$" > build-tidy/clang-tidy.log 2>&1 ||
  { grep -E "error|warning" build-tidy/clang-tidy.log; exit 1; }

step "tests"
ctest --test-dir build --output-on-failure -j "$jobs"

step "AddressSanitizer + UndefinedBehaviorSanitizer: the server and its end-to-end tests (clang)"
# lensd and lensctl built with both sanitizers (libtorch itself is not instrumented), then the
# services in process on fake models, and the e2e tests of every RPC, unload/load churn under load,
# hostile input, lenses and attribution against that server. Any report fails the test; leak
# checking is off (libtorch and gRPC keep allocations for the process's life) and the shadow gap
# unprotected (the CUDA libraries libtorch links map memory there).
CC=clang CXX=clang++ cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DLENSD_SANITIZE=address,undefined >/dev/null
asan_tests=(lens_service_test models_service_test training_service_test attribution_service_test
  server_e2e_test churn_e2e_test hostile_e2e_test lens_e2e_test attribution_e2e_test)
ninja -C build-asan lensd lensctl "${asan_tests[@]}"
ASAN_OPTIONS="detect_leaks=0:protect_shadow_gap=0:halt_on_error=1" \
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" \
  -R "^(e2e_repository|$(IFS='|'; echo "${asan_tests[*]}"))\$"

step "ThreadSanitizer: the serving core (clang)"
CC=clang CXX=clang++ cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DLENSD_CORE_ONLY=ON -DLENSD_SANITIZE=thread -DLENSD_ABSEIL_SOURCE="$root/.tools/abseil-cpp" \
  >/dev/null
tsan_tests=(scheduler_test model_registry_test tenant_limiter_test job_manager_test job_store_test)
ninja -C build-tsan "${tsan_tests[@]}"
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$root/tests/tsan.supp" \
  ctest --test-dir build-tsan --output-on-failure -j "$jobs" \
  -R "^($(IFS='|'; echo "${tsan_tests[*]}"))\$"

step "all tests passed"
