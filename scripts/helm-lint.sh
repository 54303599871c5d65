#!/usr/bin/env bash
# Checks the Helm chart (make helm-lint, CI):
#   1. helm lint --strict with the default values and with each ci/*-values.yaml;
#   2. helm template with each of them;
#   3. the Go chart checks in deploy/helm/chartcheck: every rendered manifest
#      decoded strictly into the Kubernetes API types, cross-references,
#      flags, environment, ports and probes against the binaries' --help,
#      --check-config of bin/dispatcher and bin/agent on the rendered
#      configuration, and the pods' security settings.
# helm is built from the Go module proxy once (minutes) and cached outside
# the checkout by scripts/go-tool.sh; bin/ is rebuilt with make build.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

HELM_VERSION=v3.22.0
# The Kubernetes version templates are rendered for: a go-installed helm
# reports v1.20 (its release builds set it with -ldflags), below the chart's
# kubeVersion constraint.
KUBE_VERSION=1.33.0
chart=deploy/helm/ftp-pooler
start=$SECONDS

scripts/go-tool.sh helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
helm="$root/.bin/helm"
make --no-print-directory build

values=("")
for f in "$chart"/ci/*-values.yaml; do
	values+=("$f")
done
for f in "${values[@]}"; do
	args=(--kube-version "$KUBE_VERSION")
	name="default values"
	if [ -n "$f" ]; then
		args+=(--values "$f")
		name=${f#"$chart"/}
	fi
	echo "helm lint --strict: $name"
	if ! out=$("$helm" lint --strict "${args[@]}" "$chart" 2>&1); then
		echo "$out"
		exit 1
	fi
	echo "helm template: $name"
	if ! out=$("$helm" template ftp-pooler "$chart" --namespace ftp "${args[@]}" 2>&1 >/dev/null); then
		echo "$out"
		exit 1
	fi
done

echo "chart checks (deploy/helm/chartcheck)"
(cd deploy/helm/chartcheck && HELM="$helm" FTP_POOLER_BIN="$root/bin" GOWORK=off go test -count=1 ./...)
echo "helm-lint: passed in $((SECONDS - start))s"
