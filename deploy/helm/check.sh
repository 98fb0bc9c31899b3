#!/usr/bin/env bash
# CI check of the Helm chart (tests/deploy/test_helm.py runs it; so can a person):
#   helm lint --strict, helm template and an offline Kubernetes schema check (kubecheck)
#   for the default values, the multi-practice regional example and the in-cluster variant.
# helm comes from the Go module proxy (go install helm.sh/helm/v3/cmd/helm@HELM_VERSION) and
# kubecheck (deploy/helm/kubecheck: strict decoding into the k8s.io/api types) is built from
# its Go module; both are cached under .stack/cache/bin and rebuilt only when their version or
# sources change. Build times are printed (first build on 2 busy cores: see README).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="$ROOT/.stack/cache/bin"
HELM_VERSION=v3.22.0
CHART="$HERE/practiceflow"
OUT="${PF_HELM_OUT:-$ROOT/.stack/helm}"
mkdir -p "$BIN" "$OUT"
command -v go >/dev/null || { echo "check.sh: the Go toolchain (go) is needed to build helm" >&2; exit 2; }

build() {  # build NAME STAMP CMD...: run CMD unless BIN/NAME.stamp holds STAMP
  local name=$1 stamp=$2; shift 2
  if [[ -x "$BIN/$name" && -f "$BIN/$name.stamp" && "$(cat "$BIN/$name.stamp")" == "$stamp" ]]; then return 0; fi
  local t0=$SECONDS
  "$@"
  echo "$stamp" > "$BIN/$name.stamp"
  echo "check.sh: built $name in $((SECONDS - t0)) s"
}
build helm "$HELM_VERSION" env GOBIN="$BIN" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
KC_HASH="$(cat "$HERE"/kubecheck/{main.go,go.mod,go.sum} | sha256sum | cut -c1-16)"
build kubecheck "$KC_HASH" sh -c "cd '$HERE/kubecheck' && go build -o '$BIN/kubecheck' ."

HELM="$BIN/helm"
export HELM_CACHE_HOME="$OUT/cache" HELM_CONFIG_HOME="$OUT/config" HELM_DATA_HOME="$OUT/data"
declare -A CASES=(
  [default]=""
  [region]="-f $CHART/values-region-example.yaml"
  [incluster]="--set inCluster.enabled=true --set vllm.enabled=true --set workers.replicas=1 --set kafka.topicPartitions=1"
)
for name in default region incluster; do
  # shellcheck disable=SC2086
  "$HELM" lint --strict "$CHART" ${CASES[$name]} >"$OUT/lint-$name.txt" 2>&1 || { cat "$OUT/lint-$name.txt"; exit 1; }
  # shellcheck disable=SC2086
  "$HELM" template pf "$CHART" --namespace practiceflow ${CASES[$name]} >"$OUT/$name.yaml"
  "$BIN/kubecheck" "$OUT/$name.yaml"
  echo "check.sh: $name: lint --strict ok, rendered $OUT/$name.yaml"
done
