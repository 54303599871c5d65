#!/usr/bin/env bash
# Installs a pinned Go tool from the Go module proxy, once:
#   scripts/go-tool.sh <name> <package> <version> [<module>]
# The binary is cached outside the checkout as
# ${FTP_POOLER_TOOL_CACHE:-~/.cache/ftp-pooler/tools}/<name>@<version>, so fresh
# clones reuse it, and linked as .bin/<name>; a version bump in the Makefile
# installs the new one and nothing else.
#
# <module>, the module that holds <package>, builds the package inside that
# module's own source (fetched with go mod download) instead of with
# `go install pkg@version`, which refuses modules whose go.mod has replace
# directives (Jaeger's does); the module's go.mod, go.sum and replaces then
# apply exactly as upstream builds it.
set -euo pipefail
name=$1 pkg=$2 version=$3 module=${4:-}
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${FTP_POOLER_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ftp-pooler/tools}"
mkdir -p "$cache" "$root/.bin"
if [ ! -x "$cache/$name@$version" ]; then
	# One build at a time per tool: a second caller waits for the first.
	exec {lock}>"$cache/.$name@$version.lock"
	flock "$lock"
fi
if [ ! -x "$cache/$name@$version" ]; then
	echo "installing $name $version" >&2
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	if [ -z "$module" ]; then
		GOBIN="$tmp" GOFLAGS=-mod=mod GOWORK=off go install "$pkg@$version"
	else
		dir=$(cd "$tmp" && GOWORK=off go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
		if [ -z "$dir" ] || [ ! -f "$dir/go.mod" ]; then
			echo "go-tool.sh: go mod download $module@$version gave no source directory" >&2
			exit 1
		fi
		(cd "$dir" && GOWORK=off GOFLAGS=-mod=readonly go build -trimpath -o "$tmp/$(basename "$pkg")" "$pkg")
	fi
	mv "$tmp/$(basename "$pkg")" "$cache/$name@$version"
fi
ln -sfn "$cache/$name@$version" "$root/.bin/$name"
