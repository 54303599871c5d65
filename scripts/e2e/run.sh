#!/usr/bin/env bash
# The end-to-end suite (`make e2e`): installs what is missing, starts Apache
# Kafka, the FTP servers and Jaeger (the OTLP receiver), runs the real
# bin/dispatcher and bin/agent against them (go test -tags e2e
# ./e2e/realstack/...), and stops the servers it started, also on failure or
# Ctrl-C. On failure it prints the servers'
# logs and the tail of every dispatcher and agent log; exits non-zero.
#
#   scripts/e2e/run.sh                      the whole suite
#   E2E_RUN=TestSeed scripts/e2e/run.sh     only tests matching (go test -run)
#   scripts/e2e/run.sh -short               extra arguments go to go test
#
# E2E_TAGS (default "e2e") and E2E_TIMEOUT (40m) set go test's -tags and
# -timeout: scripts/chaos/run.sh runs the chaos suite with "e2e chaos".
#
# Servers already running when it starts are used and left running.
# E2E_MATRIX=0 leaves out the FTP compatibility matrix (matrix.sh: ProFTPD,
# pyftpdlib, Apache FtpServer, inetutils ftpd), started after ftp.sh.
# Needs root on Debian 12 with Go, Java 17 and Maven (see README.md here).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) == 0 ]] || die "run.sh must run as root (it installs packages and runs FTP servers)"
cd "$REPO_ROOT"
rm -f "$STATE_DIR/go-test.log"
t0=$SECONDS
stamp() { echo "=== e2e: $* ($((SECONDS - t0)) s)"; }

started_kafka=0 started_ftp=0 started_matrix=0 used_matrix=0 started_jaeger=0 jaeger_build=0 rc=0
E2E_MATRIX=${E2E_MATRIX:-1}
export E2E_MATRIX # the tests skip the matrix when it is 0
# shellcheck disable=SC2317 # called from the trap
cleanup() {
	local code=$?
	((rc == 0)) && rc=$code
	trap - EXIT INT TERM
	if ((rc != 0)); then
		echo
		echo "=== e2e: FAILED; server logs follow"
		E2E_LOG_LINES=${E2E_LOG_LINES:-80} "$E2E_DIR/kafka.sh" logs || true
		E2E_LOG_LINES=${E2E_LOG_LINES:-80} "$E2E_DIR/ftp.sh" logs || true
		((used_matrix)) && { E2E_LOG_LINES=${E2E_LOG_LINES:-80} "$E2E_DIR/matrix.sh" logs || true; }
		((started_jaeger)) && { E2E_LOG_LINES=${E2E_LOG_LINES:-80} "$E2E_DIR/jaeger.sh" logs || true; }
		print_process_logs
	fi
	((started_matrix)) && { "$E2E_DIR/matrix.sh" stop || echo "e2e: matrix.sh stop failed" >&2; }
	((started_ftp)) && { "$E2E_DIR/ftp.sh" stop || echo "e2e: ftp.sh stop failed" >&2; }
	((started_kafka)) && { "$E2E_DIR/kafka.sh" stop || echo "e2e: kafka.sh stop failed" >&2; }
	((started_jaeger)) && { "$E2E_DIR/jaeger.sh" stop || echo "e2e: jaeger.sh stop failed" >&2; }
	# A Jaeger build still running (a failure or Ctrl-C before the tests):
	# its process group, which setsid made ours alone.
	((jaeger_build)) && { kill -- "-$jaeger_build" 2>/dev/null || true; }
	if ((rc == 0)); then stamp "PASSED"; else stamp "FAILED (exit $rc)"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'rc=130; exit 130' INT TERM

# The dispatchers' and agents' logs, kept in <state>/realstack/<test>/: those
# of the tests that failed, or all of them when go test names none (a panic,
# a timeout, a build failure).
# shellcheck disable=SC2317 # called from the trap
print_process_logs() {
	local n=${E2E_LOG_LINES:-80} f t
	local -a dirs=()
	if [[ -f $STATE_DIR/go-test.log ]]; then
		while read -r t; do
			dirs+=("$STATE_DIR/realstack/$t" "$STATE_DIR/realstack/$t-"*)
		done < <(grep -oE '^--- FAIL: Test[A-Za-z0-9_]+' "$STATE_DIR/go-test.log" | cut -d' ' -f3 | sort -u)
	fi
	((${#dirs[@]})) || dirs=("$STATE_DIR"/realstack/*)
	shopt -s nullglob
	for t in "${dirs[@]}"; do
		for f in "$t"/*.log; do
			echo "----- $f (last $n lines) -----"
			tail -n "$n" "$f"
		done
	done
	shopt -u nullglob
}

# Jaeger, the tracing test's OTLP receiver, is built from source: about 10
# minutes on a cold cache. Build it in the background from the start, so it
# overlaps the installs and the server starts.
if ! "$E2E_DIR/jaeger.sh" installed; then
	mkdir -p "$STATE_DIR"
	stamp "building Jaeger in the background (log: $STATE_DIR/jaeger-build.log)"
	setsid "$E2E_DIR/jaeger.sh" install >"$STATE_DIR/jaeger-build.log" 2>&1 &
	jaeger_build=$!
fi

stamp "install"
"$E2E_DIR/install.sh"

if [[ ! -x bin/dispatcher || ! -x bin/agent ]]; then
	stamp "make build"
	make build
fi

stamp "starting Kafka and the FTP servers"
start_servers e2e
if [[ $E2E_MATRIX != 0 ]]; then
	used_matrix=1
	if "$E2E_DIR/matrix.sh" status >/dev/null 2>&1; then
		echo "e2e: using the FTP matrix already running (it stays running)"
		"$E2E_DIR/matrix.sh" env >/dev/null
	else
		started_matrix=1
		"$E2E_DIR/matrix.sh" start
	fi
	"$E2E_DIR/matrix.sh" status
fi
if ((jaeger_build)); then
	stamp "waiting for the Jaeger build"
	wait "$jaeger_build" || { tail -n 30 "$STATE_DIR/jaeger-build.log" >&2; die "building Jaeger failed (log: $STATE_DIR/jaeger-build.log)"; }
	jaeger_build=0
	tail -n 1 "$STATE_DIR/jaeger-build.log"
fi
if "$E2E_DIR/jaeger.sh" status >/dev/null 2>&1; then
	echo "e2e: using the Jaeger already running (it stays running)"
else
	started_jaeger=1
	"$E2E_DIR/jaeger.sh" start
fi
"$E2E_DIR/jaeger.sh" status

rm -rf "$STATE_DIR/realstack"
stamp "go test ./e2e/realstack"
args=(-tags "${E2E_TAGS:-e2e}" -count=1 -timeout "${E2E_TIMEOUT:-40m}" -v)
[[ -n ${E2E_RUN:-} ]] && args+=(-run "$E2E_RUN")
set +e
E2E_STATE_DIR=$STATE_DIR go test "${args[@]}" "$@" ./e2e/realstack/... 2>&1 | tee "$STATE_DIR/go-test.log"
rc=${PIPESTATUS[0]}
set -e
echo
echo "=== e2e: summary"
grep -E '^(--- |ok |FAIL)' "$STATE_DIR/go-test.log" || true
exit "$rc"
