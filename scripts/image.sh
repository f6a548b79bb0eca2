#!/usr/bin/env bash
# `make image`: build Soulfra's image with Docker or Podman and smoke-test it. The test runs the embedded topology
# (`soulfra up`) in one container, published on a loopback port, and passes when /readyz answers 200, the image's own
# HEALTHCHECK reports the container healthy, and the process runs as UID 10001.
# Settings: IMAGE (default soulfra:local), ENGINE (docker or podman; default: the first with a running engine).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
IMAGE="${IMAGE:-soulfra:local}"
ENGINE="${ENGINE:-}"
PYTHON="${PYTHON:-python3}"

if [ -z "$ENGINE" ]; then
    for candidate in docker podman; do
        if command -v "$candidate" > /dev/null 2>&1 && "$candidate" info > /dev/null 2>&1; then
            ENGINE="$candidate"
            break
        fi
    done
fi
if [ -z "$ENGINE" ]; then
    echo "make image: no container engine: neither docker nor podman is installed with its engine running" \
        "(\`docker info\` and \`podman info\` both failed). Install and start Docker or Podman, then run make image again." >&2
    exit 69
fi

REVISION="$(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo unknown)"
echo "make image: building $IMAGE with $ENGINE (revision $REVISION)"
# Podman writes OCI images by default, which drop HEALTHCHECK: ask it for Docker's format, which keeps it.
FORMAT=()
[ "$(basename "$ENGINE")" = podman ] && FORMAT=(--format docker)
"$ENGINE" build "${FORMAT[@]}" --tag "$IMAGE" --build-arg "REVISION=$REVISION" "$ROOT"

PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
NAME="soulfra-image-smoke-$$"
cleanup() { "$ENGINE" rm --force "$NAME" > /dev/null 2>&1 || true; }
trap cleanup EXIT
fail() {
    echo "make image: smoke test failed: $1; the container's log:" >&2
    "$ENGINE" logs "$NAME" >&2 || true
    exit 1
}

echo "make image: smoke test: soulfra up in $NAME on 127.0.0.1:$PORT"
"$ENGINE" run --detach --name "$NAME" --cap-drop ALL --security-opt no-new-privileges \
    --publish "127.0.0.1:$PORT:8000" "$IMAGE" up --insecure-http > /dev/null

"$PYTHON" - "$PORT" << 'PY' || fail "/readyz did not answer 200 within 90 s"
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/readyz"
deadline = time.monotonic() + 90
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=3) as reply:
            if reply.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(1)
sys.exit(1)
PY
echo "make image: /readyz answered 200"

[ "$("$ENGINE" exec "$NAME" id -u)" = 10001 ] || fail "the process does not run as UID 10001"

for _ in $(seq 60); do
    health="$("$ENGINE" inspect --format '{{.State.Health.Status}}' "$NAME" 2> /dev/null || echo unknown)"
    case "$health" in
        healthy) echo "make image: $IMAGE is healthy: built and smoke-tested"; exit 0 ;;
        unhealthy) fail "the image's HEALTHCHECK reports the container unhealthy" ;;
    esac
    sleep 2
done
fail "the image's HEALTHCHECK did not report healthy within 120 s (last: $health)"
