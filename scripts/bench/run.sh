#!/usr/bin/env bash
# Benchmarks (`make bench`, `make bench-smoke`): installs what is missing,
# starts Apache Kafka and the FTP servers through scripts/e2e (the embedded
# broker stands in when Kafka cannot start), builds the binaries, runs
# e2e/cmd/bench, and stops the servers it started, also on failure or
# Ctrl-C. Servers already running are used and left running.
#
#   scripts/bench/run.sh            full run (~15 min): prints the tables, writes
#                                   BENCHMARKS.md and docs/bench-throughput.png
#   scripts/bench/run.sh -smoke     CI check (< 2 min): 2,000 small downloads;
#                                   exits 1 below 50% of the pooled baseline
#                                   (BENCH_SMOKE_RATIO=0.3 sets another share)
#   scripts/bench/run.sh -h         the benchmark's flags (passed through)
#
# The state, ports and FTP homes follow scripts/e2e (E2E_STATE_DIR,
# KAFKA_PORT, VSFTPD_PORT, E2E_FTP_ROOT, ...). Needs root on Debian 12.
set -euo pipefail
# shellcheck source=scripts/e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"

[[ $(id -u) == 0 ]] || die "bench: run.sh must run as root (it installs packages and runs FTP servers)"
cd "$REPO_ROOT"
t0=$SECONDS
stamp() { echo "=== bench: $* ($((SECONDS - t0)) s)" >&2; }

smoke=0
for a in "$@"; do [[ $a == -smoke || $a == --smoke ]] && smoke=1; done

started_kafka=0 started_ftp=0 rc=0
# shellcheck disable=SC2317 # called from the trap
cleanup() {
	local code=$?
	((rc == 0)) && rc=$code
	trap - EXIT INT TERM
	((started_ftp)) && { "$E2E_DIR/ftp.sh" stop || echo "bench: ftp.sh stop failed" >&2; }
	((started_kafka)) && { "$E2E_DIR/kafka.sh" stop || echo "bench: kafka.sh stop failed" >&2; }
	if ((rc == 0)); then stamp "done"; else stamp "FAILED (exit $rc)"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'rc=130; exit 130' INT TERM

stamp "install"
"$E2E_DIR/install.sh" >&2

stamp "make build"
make -s build >&2

stamp "starting Kafka and the FTP servers"
bench_args=()
if "$E2E_DIR/kafka.sh" status >/dev/null 2>&1; then
	echo "bench: using the Kafka broker already running" >&2
elif "$E2E_DIR/kafka.sh" start >&2; then
	started_kafka=1
else
	echo "bench: Kafka did not start; the embedded broker stands in (the report says so)" >&2
	bench_args+=(-embedded)
fi
if "$E2E_DIR/ftp.sh" status >/dev/null 2>&1; then
	echo "bench: using the FTP servers already running" >&2
	"$E2E_DIR/ftp.sh" env >/dev/null
else
	started_ftp=1
	"$E2E_DIR/ftp.sh" start >&2
fi

# BENCH_SMOKE_RATIO overrides the smoke gate (default 0.5 of the baseline).
[[ -n ${BENCH_SMOKE_RATIO:-} ]] && bench_args+=(-smoke-ratio "$BENCH_SMOKE_RATIO")

stamp "go run ./e2e/cmd/bench $*"
set +e
E2E_STATE_DIR=$STATE_DIR go run ./e2e/cmd/bench "${bench_args[@]}" "$@"
rc=$?
set -e
if ((rc != 0 && smoke == 0)); then
	echo "bench: logs of the dispatcher and agents are in $STATE_DIR/bench/stacks/" >&2
fi
exit "$rc"
