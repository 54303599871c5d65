#!/usr/bin/env bash
# Installs a pinned Go tool from the Go module proxy, once:
#   scripts/go-tool.sh <name> <package> <version>
# The binary is cached outside the checkout as
# ${FTP_POOLER_TOOL_CACHE:-~/.cache/ftp-pooler/tools}/<name>@<version>, so fresh
# clones reuse it, and linked as .bin/<name>; a version bump in the Makefile
# installs the new one and nothing else.
set -euo pipefail
name=$1 pkg=$2 version=$3
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${FTP_POOLER_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ftp-pooler/tools}"
mkdir -p "$cache" "$root/.bin"
if [ ! -x "$cache/$name@$version" ]; then
	echo "installing $name $version" >&2
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	GOBIN="$tmp" GOFLAGS=-mod=mod GOWORK=off go install "$pkg@$version"
	mv "$tmp/$(basename "$pkg")" "$cache/$name@$version"
fi
ln -sfn "$cache/$name@$version" "$root/.bin/$name"
