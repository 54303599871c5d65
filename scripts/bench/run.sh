#!/usr/bin/env bash
# Benchmarks (`make bench`, `make bench-smoke`): builds the binaries, then
# runs e2e/cmd/bench under scripts/with-servers.sh, which installs what is
# missing, starts Apache Kafka and the FTP servers through scripts/e2e (the
# embedded broker stands in when Kafka cannot start), and stops the servers
# it started, also on failure or Ctrl-C. Servers already running are used
# and left running. Its own messages go to stderr, the benchmark's tables to
# stdout.
#
#   scripts/bench/run.sh            full run (~15 min): prints the tables, writes
#                                   BENCHMARKS.md and docs/bench-throughput.png
#   scripts/bench/run.sh -smoke     CI check (< 2 min): 2,000 small downloads;
#                                   exits 1 below 50% of the pooled baseline
#                                   (BENCH_SMOKE_RATIO=0.3 sets another share)
#   scripts/bench/run.sh -h         the benchmark's flags (passed through)
#
# The state, ports and FTP homes follow scripts/e2e (E2E_STATE_DIR,
# KAFKA_PORT, VSFTPD_PORT, SFTPD_PORT, E2E_FTP_ROOT, ...). Needs root on
# Debian 12.
set -euo pipefail
# shellcheck source=scripts/e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"
cd "$REPO_ROOT"

smoke=0
for a in "$@"; do [[ $a == -smoke || $a == --smoke ]] && smoke=1; done
bench_args=()
# BENCH_SMOKE_RATIO overrides the smoke gate (default 0.5 of the baseline).
if [[ -n ${BENCH_SMOKE_RATIO:-} ]]; then bench_args+=(-smoke-ratio "$BENCH_SMOKE_RATIO"); fi

echo "=== bench: make build" >&2
make -s build >&2

# The full run has an SFTP section (OpenSSH's sshd); the smoke check does not.
sftp=(--sftp)
((smoke == 0)) || sftp=()
# Without Kafka, with-servers leaves KAFKA_BROKERS empty in <state>/env,
# and the benchmark starts its embedded broker (its report says so).
rc=0
"$REPO_ROOT/scripts/with-servers.sh" --label bench --kafka-optional --ftp "${sftp[@]}" \
	-- go run ./e2e/cmd/bench "${bench_args[@]}" "$@" || rc=$?
if ((rc != 0 && smoke == 0)); then
	echo "bench: logs of the dispatcher and agents are in $STATE_DIR/bench/stacks/" >&2
fi
exit "$rc"
