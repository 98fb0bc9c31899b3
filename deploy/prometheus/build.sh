#!/usr/bin/env bash
# Build Prometheus and promtool from their Go module (Apache-2.0) through the Go module proxy:
#   go install github.com/prometheus/prometheus/cmd/{prometheus,promtool}@PROMETHEUS_VERSION
# into .stack/cache/bin, rebuilt only when the version changes (a stamp file), like
# deploy/helm/check.sh builds helm. `./pf setup` calls it; tests/deploy/test_metrics_stack.py
# uses the binaries. The build time is printed (see README "Metrics and dashboards").
# Without a Go toolchain it says so and exits 2 (the deploy tests then skip and print why).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="$ROOT/.stack/cache/bin"
PROMETHEUS_VERSION=v0.316.0  # Prometheus 3.x's Go module version (go-partial.tsv: newest accepted)
mkdir -p "$BIN"
command -v go >/dev/null || { echo "prometheus/build.sh: the Go toolchain (go) is needed to build prometheus" >&2; exit 2; }
stamp="$PROMETHEUS_VERSION"
if [[ -x "$BIN/prometheus" && -x "$BIN/promtool" && -f "$BIN/prometheus.stamp" && "$(cat "$BIN/prometheus.stamp")" == "$stamp" ]]; then
  exit 0
fi
t0=$SECONDS
echo "prometheus/build.sh: building prometheus + promtool $PROMETHEUS_VERSION from the Go module proxy (several minutes the first time)"
env GOBIN="$BIN" go install \
  "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION" \
  "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
echo "$stamp" > "$BIN/prometheus.stamp"
echo "prometheus/build.sh: built prometheus + promtool in $((SECONDS - t0)) s"
