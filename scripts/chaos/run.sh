#!/usr/bin/env bash
# The fault-injection suite (`make chaos`): 2 dispatchers and 3 agents as
# processes of the real binaries, against real Apache Kafka, vsftpd and
# pure-ftpd, run 5,000 tasks while agents, a dispatcher, vsftpd and the
# broker are killed, stopped and restarted and a zombie agent is cut off;
# then a table of checks is printed (e2e/realstack/chaos_test.go).
#
#   scripts/chaos/run.sh                       the suite
#   E2E_CHAOS_SEED=123 scripts/chaos/run.sh    replay a run's choices
#   scripts/chaos/run.sh -count=3              extra arguments go to go test
#
# Its servers use ports, FTP homes and a state directory of their own
# (env.sh here: .e2e-chaos, Kafka 29092, FTP 2221-2223, /srv/ftp-chaos), so
# it runs beside `make e2e`. It snapshots bin/ into the state directory
# first, so a `make build` elsewhere during the run does not change the
# binaries it restarts. It installs what is missing (scripts/e2e/install.sh),
# starts Kafka and the FTP servers with scripts/e2e, stops those it started,
# also on failure or Ctrl-C, and on failure prints the servers' logs and
# the tail of every dispatcher and agent log. Needs root on Debian 12 with
# Go, Java 17 and Maven.
set -euo pipefail
CHAOS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/chaos/env.sh
. "$CHAOS_DIR/env.sh"
# shellcheck source=scripts/e2e/lib.sh
. "$CHAOS_DIR/../e2e/lib.sh"
[[ $(id -u) == 0 ]] || die "chaos: run.sh must run as root (it installs packages and runs FTP servers)"
cd "$REPO_ROOT"
t0=$SECONDS
stamp() { echo "=== chaos: $* ($((SECONDS - t0)) s)"; }
mkdir -p "$STATE_DIR"
LOG=$STATE_DIR/go-test.log
rm -f "$LOG"

started_kafka=0 started_ftp=0 rc=0
# shellcheck disable=SC2317 # called from the trap
cleanup() {
	local code=$?
	((rc == 0)) && rc=$code
	trap - EXIT INT TERM
	if ((rc != 0)); then
		echo
		echo "=== chaos: FAILED; logs follow"
		E2E_LOG_LINES=${E2E_LOG_LINES:-60} "$E2E_DIR/kafka.sh" logs || true
		E2E_LOG_LINES=${E2E_LOG_LINES:-60} "$E2E_DIR/ftp.sh" logs || true
		local f
		for f in "$STATE_DIR"/realstack/TestChaos*/*.log; do
			[[ -f $f ]] || continue
			echo "----- $f (last ${E2E_LOG_LINES:-60} lines) -----"
			tail -n "${E2E_LOG_LINES:-60}" "$f"
		done
	fi
	((started_ftp)) && { "$E2E_DIR/ftp.sh" stop || echo "chaos: ftp.sh stop failed" >&2; }
	((started_kafka)) && { "$E2E_DIR/kafka.sh" stop || echo "chaos: kafka.sh stop failed" >&2; }
	if ((rc == 0)); then stamp "PASSED"; else stamp "FAILED (exit $rc)"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'rc=130; exit 130' INT TERM

stamp "install"
"$E2E_DIR/install.sh"
if [[ ! -x bin/dispatcher || ! -x bin/agent ]]; then
	stamp "make build"
	make build
fi
rm -rf "${STATE_DIR:?}/bin"
mkdir -p "$STATE_DIR/bin"
cp bin/dispatcher bin/agent "$STATE_DIR/bin/"

stamp "starting Kafka and the FTP servers"
start_servers chaos

rm -rf "$STATE_DIR/realstack"
stamp "go test -tags 'e2e chaos' -run TestChaos ./e2e/realstack"
set +e
E2E_BIN_DIR=$STATE_DIR/bin go test -tags 'e2e chaos' -count=1 -timeout "${E2E_TIMEOUT:-45m}" -v \
	-run "${E2E_RUN:-^TestChaos\$}" "$@" ./e2e/realstack/... 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
exit "$rc"
