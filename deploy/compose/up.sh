#!/usr/bin/env bash
# Starts deploy/compose/compose.yaml: makes deploy/compose/tokens.txt when it is missing (an
# admin token, printed once; lensd keeps only its hash), then `docker-compose up -d` (Debian's
# docker-compose) and waits until lensd is healthy. Images: deploy/docker/build_images.sh.
#   bash deploy/compose/up.sh [extra docker-compose arguments, e.g. --profile grafana]
#   docker-compose -p lensd -f deploy/compose/compose.yaml down     # stops it
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
command -v docker-compose >/dev/null ||
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    docker-compose >/dev/null
if [ ! -s "$here/tokens.txt" ]; then
  out=$(as_root docker run --rm --network none "${LENSD_IMAGE:-lensd:cpu}" token --tenant=admin --role=admin)
  sed -n 's/^tokens file line: //p' <<<"$out" > "$here/tokens.txt"
  chmod 644 "$here/tokens.txt"
  echo "compose: the admin token (shown once): $(sed -n 's/^token: //p' <<<"$out")"
fi
as_root docker-compose -p lensd -f "$here/compose.yaml" "$@" up -d
for _ in $(seq 120); do
  status=$(as_root docker inspect -f '{{.State.Health.Status}}' lensd_lensd_1 2>/dev/null || true)
  [ "$status" = healthy ] && break
  sleep 1
done
echo "compose: lensd is ${status:-not running} on 127.0.0.1:50051; Prometheus on http://127.0.0.1:9090"
