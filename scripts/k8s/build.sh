#!/usr/bin/env bash
# Builds the Kubernetes binaries a single-node test cluster needs
# (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy, kubectl) from the Go module proxy, once:
#   scripts/k8s/build.sh
# and prints the directory that holds them. They are cached outside the
# checkout in ${FTP_POOLER_TOOL_CACHE:-~/.cache/ftp-pooler/tools}/kubernetes@<version>,
# so fresh clones reuse them; a cold build takes minutes (about 950 MB of
# modules), a warm one nothing.
#
# `go install k8s.io/kubernetes/cmd/...@version` is refused: k8s.io/kubernetes
# points its staging modules (k8s.io/api, client-go, ...) at ./staging with
# replace directives, and its module zip leaves staging/ out. So the build
# runs in a wrapper module that requires k8s.io/kubernetes and replaces each
# staging module, as listed in that go.mod, with its published v0.<minor>
# release, which is the same code.
set -euo pipefail
version=${KUBERNETES_VERSION:-v1.34.4}
staging_version=v0.${version#v1.}
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
cache="${FTP_POOLER_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ftp-pooler/tools}"
out="$cache/kubernetes@$version"

built() {
	local b
	for b in "${binaries[@]}"; do [ -x "$out/$b" ] || return 1; done
}

mkdir -p "$cache"
if ! built; then
	exec {lock}>"$cache/.kubernetes@$version.lock"
	flock "$lock"
fi
if ! built; then
	echo "building Kubernetes $version (${binaries[*]})" >&2
	t0=$(date +%s)
	work="$cache/.kubernetes@$version.module"
	rm -rf "$work" "$out.partial"
	mkdir -p "$work" "$out.partial"
	gomod=$(cd "$work" && GOWORK=off GOFLAGS='' go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
	[ -f "$gomod" ] || {
		echo "k8s/build.sh: go mod download k8s.io/kubernetes@$version gave no go.mod" >&2
		exit 1
	}
	go_directive=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")
	mapfile -t staging < <(sed -n 's|^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/src/k8s\.io/.*$|\1|p' "$gomod" | sort -u)
	((${#staging[@]} > 0)) || {
		echo "k8s/build.sh: no staging replaces in $gomod" >&2
		exit 1
	}
	{
		echo "// Written by scripts/k8s/build.sh: builds Kubernetes $version's commands."
		echo "module ftp-pooler.local/kubernetes-build"
		echo
		echo "go $go_directive"
		echo
		echo "require k8s.io/kubernetes $version"
		echo
		echo "replace ("
		for m in "${staging[@]}"; do echo "	$m => $m $staging_version"; done
		echo ")"
	} >"$work/go.mod"
	# helm refuses a server that says it is v0.0.0: stamp the version as
	# Kubernetes' own build does.
	minor=${version#v1.}
	minor=${minor%%.*}
	pkg=k8s.io/component-base/version
	ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$version -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
	(
		cd "$work"
		pkgs=()
		for b in "${binaries[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
		GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -tags providerless -ldflags "$ldflags" -o "$out.partial/" "${pkgs[@]}"
	)
	rm -rf "$out"
	mv "$out.partial" "$out"
	echo "built Kubernetes $version in $(($(date +%s) - t0)) s: $out" >&2
fi
echo "$out"
