#!/usr/bin/env bash
# Runs a command with the servers it needs: the one start, trap and stop of
# the suites (scripts/e2e/run.sh, scripts/chaos/run.sh, scripts/bench/run.sh).
#
#   scripts/with-servers.sh [options] -- command [args...]
#
#   --kafka              Apache Kafka (scripts/e2e/kafka.sh)
#   --kafka-optional     Kafka if it starts; if it does not, the command runs
#                        all the same, with KAFKA_BROKERS empty in <state>/env
#                        (the benchmark then uses its embedded broker)
#   --ftp                vsftpd, pure-ftpd and vsftps (ftp.sh)
#   --matrix             the FTP compatibility matrix (matrix.sh); without it
#                        the command gets E2E_MATRIX=0 and install.sh skips it
#   --sftp               the SFTP servers: OpenSSH's sshd and ProFTPD mod_sftp
#                        (sftpd.sh); without it the command gets E2E_SFTP=0
#   --jaeger             Jaeger (jaeger.sh); a build it needs (about 10 min
#                        cold) starts in the background first, so that it
#                        overlaps the installs and the other starts
#   --label NAME         prefix of its messages (default: with-servers)
#   --go-test-log FILE   the command is `go test -v`: its output is copied to
#                        FILE, its result lines are printed again at the end,
#                        and the tests that failed name the process logs below
#   --process-logs DIR   on failure, the tail of DIR/<test>/*.log of each test
#                        that failed (of every DIR/* when none is named)
#
# It runs scripts/e2e/install.sh (for Kafka, FTP, the matrix or SFTP: root only),
# starts each server unless it already runs (a server already running is
# used and left running), runs the command with E2E_STATE_DIR set, and stops
# by PID exactly the servers it started: also when the command fails or it
# gets Ctrl-C, SIGINT or SIGTERM, which it passes on to the command's process
# group first (SIGKILL after 30 s). When the command fails, it prints the tail
# of the logs of the servers it used and the process logs, E2E_LOG_LINES (80)
# lines each. It exits with the command's status (130 on SIGINT, 143 on
# SIGTERM). Its own messages go to stderr, so the command's stdout stays its
# own; the command's stdin is /dev/null. Ports, state and FTP homes follow
# scripts/e2e (E2E_STATE_DIR, KAFKA_PORT, VSFTPD_PORT, E2E_FTP_ROOT, ...).
set -euo pipefail
# shellcheck source=scripts/e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/e2e/lib.sh"

label=with-servers kafka=0 ftp=0 matrix=0 sftp=0 jaeger=0 go_test_log='' process_logs=''
usage() {
	echo "usage: $0 [--kafka|--kafka-optional] [--ftp] [--matrix] [--sftp] [--jaeger] [--label NAME] [--go-test-log FILE] [--process-logs DIR] -- command [args...]" >&2
	exit 2
}
while (($#)); do
	case $1 in
	--kafka) kafka=1 ;;
	--kafka-optional) kafka=optional ;;
	--ftp) ftp=1 ;;
	--matrix) matrix=1 ;;
	--sftp) sftp=1 ;;
	--jaeger) jaeger=1 ;;
	--label | --go-test-log | --process-logs)
		(($# >= 2)) || usage
		case $1 in
		--label) label=$2 ;;
		--go-test-log) go_test_log=$2 ;;
		--process-logs) process_logs=$2 ;;
		esac
		shift
		;;
	--)
		shift
		break
		;;
	*) usage ;;
	esac
	shift
done
(($#)) || usage

t0=$SECONDS
stamp() { echo "=== $label: $* ($((SECONDS - t0)) s)" >&2; }
fail() {
	echo "$label: error: $*" >&2
	exit 1
}
log_lines=${E2E_LOG_LINES:-80}

if [[ $kafka != 0 || $ftp == 1 || $matrix == 1 || $sftp == 1 ]]; then
	[[ $(id -u) == 0 ]] || fail "must run as root (it installs packages and runs FTP servers)"
fi
ensure_state_dir
export E2E_STATE_DIR=$STATE_DIR
export E2E_MATRIX=$matrix # install.sh and the tests leave the matrix out when it is 0
export E2E_SFTP=$sftp     # and the SFTP servers

# What it started (stopped at exit, in reverse order) and what it used (whose
# logs a failure prints): names of scripts/e2e/<name>.sh.
started=() used=()
jaeger_build='' command_pid='' command_ran=0 rc=0

# The dispatchers' and agents' logs, kept in <process_logs>/<test>/: those of
# the tests that failed, or all of them when go test names none (a panic, a
# timeout, a build failure).
# shellcheck disable=SC2317 # called from cleanup, the EXIT trap
print_process_logs() {
	local t f
	local -a dirs=()
	if [[ -n $go_test_log && -f $go_test_log ]]; then
		while read -r t; do
			dirs+=("$process_logs/$t" "$process_logs/$t-"*)
		done < <(grep -oE '^--- FAIL: Test[A-Za-z0-9_]+' "$go_test_log" | cut -d' ' -f3 | sort -u)
	fi
	((${#dirs[@]})) || dirs=("$process_logs"/*)
	for t in "${dirs[@]}"; do
		for f in "$t"/*.log; do
			[[ -f $f ]] || continue
			echo "----- $f (last $log_lines lines) -----"
			tail -n "$log_lines" "$f"
		done
	done
}

# shellcheck disable=SC2317 # the EXIT trap
cleanup() {
	local code=$? i s
	((rc == 0)) && rc=$code
	# A second Ctrl-C must not leave servers half stopped; each stop is
	# bounded (stop_pid: SIGKILL after 20 s).
	trap '' INT TERM
	trap - EXIT
	if ((rc != 0)); then
		{
			echo
			echo "=== $label: FAILED; logs follow"
			for s in "${used[@]}"; do E2E_LOG_LINES=$log_lines "$E2E_DIR/$s.sh" logs || true; done
			if ((command_ran)) && [[ -n $process_logs ]]; then print_process_logs; fi
		} >&2
	fi
	for ((i = ${#started[@]} - 1; i >= 0; i--)); do
		"$E2E_DIR/${started[i]}.sh" stop >&2 || echo "$label: ${started[i]}.sh stop failed" >&2
	done
	# A Jaeger build still running (a failure or a signal before its wait):
	# its process group, which setsid made its own.
	if [[ -n $jaeger_build ]]; then kill -- "-$jaeger_build" 2>/dev/null || true; fi
	if ((rc != 0)); then
		stamp "FAILED (exit $rc)"
	elif [[ -n $go_test_log ]]; then
		stamp "PASSED"
	else
		stamp "done"
	fi
	exit "$rc"
}

# on_signal <signal> <status>: passes the signal on to the command's process
# group and gives it 30 s to end (a test binary's cleanup), then exits.
# shellcheck disable=SC2317 # the INT and TERM traps
on_signal() {
	local sig=$1 i
	rc=$2
	echo "$label: SIG$sig" >&2
	if [[ -n $command_pid ]]; then
		kill "-$sig" -- "-$command_pid" 2>/dev/null || true
		for ((i = 0; i < 300; i++)); do
			_proc_alive "$command_pid" || break
			sleep 0.1
		done
		if _proc_alive "$command_pid"; then
			echo "$label: the command still runs 30 s after SIG$sig: SIGKILL" >&2
			kill -KILL -- "-$command_pid" 2>/dev/null || true
		fi
		wait "$command_pid" 2>/dev/null || true
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM

if ((jaeger)) && ! "$E2E_DIR/jaeger.sh" installed; then
	stamp "building Jaeger in the background (log: $STATE_DIR/jaeger-build.log)"
	setsid "$E2E_DIR/jaeger.sh" install >"$STATE_DIR/jaeger-build.log" 2>&1 &
	jaeger_build=$!
fi

if [[ $kafka != 0 || $ftp == 1 || $matrix == 1 || $sftp == 1 ]]; then
	stamp "install"
	"$E2E_DIR/install.sh" >&2
fi

# Each server is marked started before its start, so that one that fails
# half-way is stopped too.
if [[ $kafka != 0 ]]; then
	stamp "Kafka"
	used+=(kafka)
	if "$E2E_DIR/kafka.sh" status >/dev/null 2>&1; then
		echo "$label: using the Kafka broker already running (it stays running)" >&2
		"$E2E_DIR/kafka.sh" topics >&2
	else
		started+=(kafka)
		if ! "$E2E_DIR/kafka.sh" start >&2; then
			[[ $kafka == optional ]] || fail "Kafka did not start"
			echo "$label: Kafka did not start; the command runs without it (KAFKA_BROKERS is empty)" >&2
			"$E2E_DIR/kafka.sh" stop >&2 || true
			set_env_var KAFKA_BROKERS ""
			set_env_var KAFKA_SASL_BROKERS ""
		fi
	fi
fi
# use_or_start <script name> <what>: the servers of scripts/e2e/<name>.sh,
# used as they are when they already run, else started (and so stopped).
use_or_start() {
	stamp "$2"
	used+=("$1")
	if "$E2E_DIR/$1.sh" status >/dev/null 2>&1; then
		echo "$label: using the $2 already running (left running)" >&2
		"$E2E_DIR/$1.sh" env >/dev/null
	else
		started+=("$1")
		"$E2E_DIR/$1.sh" start >&2
	fi
}
if ((ftp)); then use_or_start ftp "FTP servers"; fi
if ((matrix)); then use_or_start matrix "FTP matrix"; fi
if ((sftp)); then use_or_start sftpd "SFTP servers"; fi
if ((jaeger)); then
	if [[ -n $jaeger_build ]]; then
		stamp "waiting for the Jaeger build"
		if ! wait "$jaeger_build"; then
			jaeger_build=''
			tail -n 30 "$STATE_DIR/jaeger-build.log" >&2
			fail "building Jaeger failed (log: $STATE_DIR/jaeger-build.log)"
		fi
		jaeger_build=''
		tail -n 1 "$STATE_DIR/jaeger-build.log" >&2
	fi
	stamp "Jaeger"
	used+=(jaeger)
	if "$E2E_DIR/jaeger.sh" status >/dev/null 2>&1; then
		echo "$label: using the Jaeger already running (it stays running)" >&2
	else
		started+=(jaeger)
		"$E2E_DIR/jaeger.sh" start >&2
	fi
fi
for s in "${used[@]}"; do "$E2E_DIR/$s.sh" status >&2 || true; done

# The command runs as a job of its own (set -m: its own process group, its
# signals not ignored as a plain background job's are), so that a signal to
# this script, which a wait here lets the traps take at once, reaches all of
# it. Its stdin is /dev/null: a background group reading the terminal would
# stop. go test's output goes through tee, which outlives a SIGINT to flush
# it.
stamp "$*"
command_ran=1
set -m
if [[ -n $go_test_log ]]; then
	("$@" 2>&1 </dev/null | (
		trap '' INT TERM
		exec tee "$go_test_log"
	)) &
else
	"$@" </dev/null &
fi
command_pid=$!
set +m
wait "$command_pid" || rc=$?
command_pid=''
if [[ -n $go_test_log ]]; then
	{
		echo
		echo "=== $label: summary"
		grep -E '^(--- |ok |FAIL)' "$go_test_log" || true
	} >&2
fi
exit "$rc"
