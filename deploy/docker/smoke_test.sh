#!/usr/bin/env bash
# Runs the images deploy/docker/build_images.sh made, on loopback only:
#   1. lensd:cpu on the demo model (the repository mounted read-only, a fresh tokens file):
#      grpc_health_probe inside the container reports SERVING for lensd.v1.Lens, and a Decode
#      from the host's lensctl equals the same Decode from the bare binary (build/server/lensd);
#   2. deploy/compose up: Prometheus scrapes lensd and answers PromQL queries about it.
#   bash deploy/docker/smoke_test.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
docker_bin=$(command -v docker)
docker() { as_root "$docker_bin" "$@"; }
work=$(mktemp -d)
chmod 755 "$work"
cleanup() {
  docker rm -f lensd-smoke >/dev/null 2>&1 || true
  as_root docker-compose -p lensd -f deploy/compose/compose.yaml down -v >/dev/null 2>&1 || true
  [ -n "${bare_pid:-}" ] && kill "$bare_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
token_output=$(./build/server/lensd token --tenant=smoke --role=admin)
export LENSD_TOKEN
LENSD_TOKEN=$(sed -n 's/^token: //p' <<<"$token_output")
sed -n 's/^tokens file line: //p' <<<"$token_output" > "$work/tokens.txt"
chmod 644 "$work/tokens.txt"
prompt="And God said, Let there be light: and there was"

echo "== lensd:cpu on the demo model"
started=$(date +%s)
docker run -d --name lensd-smoke --network host -v "$root/deploy/models:/models:ro" \
  -v "$work/tokens.txt:/etc/lensd/tokens.txt:ro" lensd:cpu --models=kjv-gpt2 \
  --lenses=kjv-gpt2/tuned --tokens_file=/etc/lensd/tokens.txt --address=127.0.0.1:50071 \
  --metrics_address=127.0.0.1:9471 >/dev/null
for _ in $(seq 120); do
  docker exec lensd-smoke grpc_health_probe -addr=127.0.0.1:50071 -service=lensd.v1.Lens \
    >/dev/null 2>&1 && break
  sleep 1
done
docker exec lensd-smoke grpc_health_probe -addr=127.0.0.1:50071 -service=lensd.v1.Lens
echo "serving $(( $(date +%s) - started )) s after docker run; user $(docker exec lensd-smoke id -u)"
./build/clients/cli/lensctl decode --address=127.0.0.1:50071 --lens tuned --json "$prompt" \
  > "$work/container.json"
./build/server/lensd --model_repository=deploy/models --models=kjv-gpt2 --lenses=kjv-gpt2/tuned \
  --tokens_file="$work/tokens.txt" --address=127.0.0.1:50072 --metrics_address=127.0.0.1:0 \
  --state_dir="$work/state" --log_requests=false 2>"$work/bare.log" &
bare_pid=$!
for _ in $(seq 300); do grep -q serving "$work/bare.log" && break; sleep 0.1; done
./build/clients/cli/lensctl decode --address=127.0.0.1:50072 --lens tuned --json "$prompt" \
  > "$work/bare.json"
if cmp -s "$work/container.json" "$work/bare.json"; then
  echo "Decode from the container equals the bare binary's ($(wc -c <"$work/bare.json") bytes of JSON)"
else
  diff "$work/container.json" "$work/bare.json" | head -20
  echo "smoke: the container's Decode differs from the bare binary's" >&2
  exit 1
fi
docker rm -f lensd-smoke >/dev/null

echo "== compose: lensd and Prometheus"
cp "$work/tokens.txt" deploy/compose/tokens.txt
bash deploy/compose/up.sh
for _ in $(seq 60); do
  up=$(curl -fs 'http://127.0.0.1:9090/api/v1/query?query=up%7Bjob%3D%22lensd%22%7D' || true)
  grep -q '"value":\[[0-9.]*,"1"\]' <<<"$up" && break
  sleep 1
done
echo "up{job=\"lensd\"}: $up"
echo "lensd_models_loaded: $(curl -fs 'http://127.0.0.1:9090/api/v1/query?query=lensd_models_loaded')"
echo "rules: $(curl -fs 'http://127.0.0.1:9090/api/v1/rules' | grep -o '"name":"Lensd[A-Za-z]*"' | tr '\n' ' ')"
grep -q '"value":\[[0-9.]*,"1"\]' <<<"$up"
rm -f deploy/compose/tokens.txt
echo "smoke: all passed"
