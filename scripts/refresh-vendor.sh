#!/usr/bin/env bash
# Refresh the dashboard's vendored htmx from the npm registry: `scripts/refresh-vendor.sh [VERSION]`.
# Fetches the package with `npm pack` (no install, no Node build), copies the minified script and its licence into
# src/soulfra/dashboard/static/vendor/, and records the version and each file's sha256 in VENDOR.txt there.
# Review the diff and run the browser tests (tests/integration/test_dashboard.py) before committing a new version.
set -euo pipefail
VERSION="${1:-2.0.11}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/src/soulfra/dashboard/static/vendor"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
TARBALL="$(npm pack --silent "htmx.org@$VERSION")"
tar -xzf "$TARBALL"
mkdir -p "$DEST"
cp package/dist/htmx.min.js "$DEST/htmx.min.js"
cp package/LICENSE "$DEST/htmx.LICENSE"
{
    echo "htmx.org $VERSION (npm registry, npm pack htmx.org@$VERSION)"
    echo "tarball sha256 $(sha256sum "$TARBALL" | cut -d' ' -f1)"
    (cd "$DEST" && sha256sum htmx.min.js htmx.LICENSE)
} > "$DEST/VENDOR.txt"
cat "$DEST/VENDOR.txt"
