#!/usr/bin/env bash
# make lint's shell part: shellcheck on every shell script under scripts/ and
# on .ci/run, following what they source (-x, paths relative to each script).
# The tool is Debian's shellcheck package (0.9.0 in Debian 12), installed with
# apt-get when missing, as scripts/e2e/install.sh installs its packages
# (nothing runs when it is there); without root it says how to install it.
#
#   scripts/shellcheck.sh            every script
#   scripts/shellcheck.sh FILE...    only those
set -euo pipefail
# shellcheck source=scripts/e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/e2e/lib.sh"

if ! command -v shellcheck >/dev/null; then
	if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
		echo "shellcheck.sh: shellcheck is not installed. Install it (Debian, Ubuntu: sudo apt-get install shellcheck;" \
			"elsewhere see https://github.com/koalaman/shellcheck#installing), or run make lint as root on Debian, which installs it." >&2
		exit 1
	fi
	apt_install shellcheck
fi

cd "$REPO_ROOT"
files=("$@")
if ((${#files[@]} == 0)); then
	# The .sh files, and any other file whose #! line runs sh or bash.
	while IFS= read -r -d '' f; do
		if [[ $f == *.sh ]] || head -n 1 "$f" | grep -qE '^#!.*\b(ba)?sh\b'; then files+=("$f"); fi
	done < <(find scripts -type f -print0 | sort -z)
	files+=(.ci/run)
fi
shellcheck --external-sources --source-path=SCRIPTDIR "${files[@]}"
echo "shellcheck $(shellcheck --version | sed -n 's/^version: //p'): ${#files[@]} scripts clean"
