# shellcheck shell=bash
# Shared helpers for the end-to-end scripts; source it, don't run it:
#   . "$(dirname "$0")/lib.sh"
#
# Layout:
#   state  $E2E_STATE_DIR, else <repo>/.e2e   configs, data, logs, PID files
#   cache  $E2E_CACHE_DIR, else /var/cache/ftp-pooler-e2e   Kafka jars, pure-ftpd
#
# A server started by start_bg has <state>/<name>.pid (its PID),
# <state>/<name>.ident (its kernel start time and program name, so a reused
# PID is never signalled) and <state>/<name>.log (stdout and stderr).

# shellcheck disable=SC2034 # its variables are for the scripts that source it
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(git -C "$E2E_DIR" rev-parse --show-toplevel 2>/dev/null || (cd "$E2E_DIR/../.." && pwd))
STATE_DIR=${E2E_STATE_DIR:-$REPO_ROOT/.e2e}
CACHE_DIR=${E2E_CACHE_DIR:-/var/cache/ftp-pooler-e2e}

# Versions. Kafka comes from Maven Central; 4.1.2 is the newest 4.1.x served.
KAFKA_VERSION=${KAFKA_VERSION:-4.1.2}
LOG4J_VERSION=2.24.3
SLF4J_VERSION=1.7.36
KAFKA_HOME=$CACHE_DIR/kafka-$KAFKA_VERSION
KAFKA_LIBS=$KAFKA_HOME/libs
PUREFTPD_ROOT=$CACHE_DIR/pure-ftpd/root

die() {
	echo "e2e: error: $*" >&2
	exit 1
}

note() { # only with E2E_VERBOSE=1: success stays quiet
	if [[ ${E2E_VERBOSE:-0} == 1 ]]; then echo "e2e: $*" >&2; fi
}

ensure_state_dir() {
	mkdir -p "$STATE_DIR"
}

# _proc_field <pid> <n>: field n (numbered as in proc(5): 3 state, 4 ppid,
# 22 start time) of /proc/<pid>/stat, parsed after the last ')' because the
# command name may hold spaces.
_proc_field() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	# After "comm)", the next field is field 3 (state).
	local -a f
	read -r -a f <<<"$stat"
	echo "${f[$(($2 - 3))]}"
}

_proc_alive() { # pid: running, not a zombie
	local st
	st=$(_proc_field "$1" 3) || return 1
	[[ $st != Z && $st != X ]]
}

# _ended <pid>: sets ENDED to how a child of this shell ended ("exit 1",
# "killed by signal 9 (KILL)"), or what it looks like if it still runs: a
# server that dies before writing a line (a crash, the OOM killer) leaves
# nothing else to go on. Not in $(...): a subshell cannot wait for it.
_ended() {
	local rc=0
	ENDED="exit status unknown"
	[[ $1 =~ ^[0-9]+$ ]] || return 0
	if _proc_alive "$1"; then
		ENDED="pid $1 still runs, started at $(_proc_field "$1" 22), command line [$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null)]"
		return 0
	fi
	wait "$1" 2>/dev/null || rc=$?
	if ((rc == 127)); then
		ENDED="exit status unknown: not a child of this shell"
	elif ((rc > 128)); then
		ENDED="killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null))"
	else
		ENDED="exit $rc"
	fi
}

# pid_of <name>: prints the PID if <name> is running as we started it.
pid_of() {
	local name=$1 pidf="$STATE_DIR/$1.pid" identf="$STATE_DIR/$1.ident" pid start prog
	[[ -f $pidf && -f $identf ]] || return 1
	pid=$(<"$pidf")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	read -r start prog <"$identf" || return 1
	_proc_alive "$pid" || return 1
	[[ $(_proc_field "$pid" 22) == "$start" ]] || return 1
	# The command line must still name the program we started (vsftpd and
	# pure-ftpd may retitle themselves, but keep the program name). Read
	# whole rather than piped to grep -q, whose early exit can leave tr a
	# SIGPIPE that pipefail counts as a failed check; and an execve in
	# progress shows an empty command line for a moment. Either made a
	# starting Jaeger (setsid execs it after start_bg saw setsid's command
	# line) look dead while it ran: "jaeger died while starting", twice.
	local cmd i
	for ((i = 0; i < 10; i++)); do
		cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
		[[ -z $cmd ]] || break
		sleep 0.02
	done
	[[ $cmd == *"$prog"* ]] || return 1
	echo "$pid"
}

is_running() { pid_of "$1" >/dev/null; }

# start_bg <name> <program> [args...]: runs the program in a session of its
# own, detached from the terminal (stdin /dev/null), logging to
# <state>/<name>.log.
# Does nothing if <name> is already running.
start_bg() {
	local name=$1
	shift
	ensure_state_dir
	if is_running "$name"; then
		note "$name already running (pid $(pid_of "$name"))"
		return 0
	fi
	rm -f "$STATE_DIR/$name.pid" "$STATE_DIR/$name.ident"
	local log="$STATE_DIR/$name.log"
	{ echo "=== $(date -Is) starting $name: $*"; } >>"$log"
	# setsid execs the program in place (the background child is never a
	# group leader), so $! is the server's own PID.
	# START_BG_STDIN=log: stdin is the log too (vsftpd reports a bad config
	# as "500 OOPS" on fd 0, where an inetd client would be).
	if [[ ${START_BG_STDIN:-} == log ]]; then
		setsid "$@" 0>>"$log" >>"$log" 2>&1 &
	else
		setsid "$@" </dev/null >>"$log" 2>&1 &
	fi
	local pid=$! i start cmd prog
	prog=$(basename "$1")
	# Wait for the exec: the command line changes from bash's to setsid's
	# (which names the program too) to the program's own.
	for ((i = 0; i < 100; i++)); do
		cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || cmd=
		if [[ $cmd == *"$prog"* && $cmd != setsid\ * ]]; then break; fi
		_proc_alive "$pid" || break
		sleep 0.02
	done
	if ! _proc_alive "$pid"; then
		tail -n 30 "$log" >&2 || true
		_ended "$pid"
		die "$name exited at once ($ENDED; see $log)"
	fi
	start=$(_proc_field "$pid" 22)
	echo "$pid" >"$STATE_DIR/$name.pid"
	echo "$start $prog" >"$STATE_DIR/$name.ident"
	note "$name started (pid $pid)"
}

# _tree <pid>: "pid starttime" of that process, its descendants and its
# process group, live ones only (one pass over /proc). vsftpd puts each
# session in a new session of its own, so the group alone is not enough; the
# list is taken before signalling, while the sessions are still our children.
_tree() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" '
		{ pid = $1; sub(/^.*\) /, ""); split($0, f, " ")
		  state[pid] = f[1]; ppid[pid] = f[2]; pgrp[pid] = f[3]; st[pid] = f[20] }
		END {
			if (!(root in ppid)) exit
			in_tree[root] = 1
			do {
				added = 0
				for (p in ppid) if (!(p in in_tree) && ((ppid[p] in in_tree) || pgrp[p] == root)) { in_tree[p] = 1; added = 1 }
			} while (added)
			for (p in in_tree) if (state[p] != "Z" && state[p] != "X") print p, st[p]
		}' || true
}

# _tree_alive "pid start"...: prints the entries still running as themselves.
_tree_alive() {
	local e p s
	for e in "$@"; do
		p=${e% *} s=${e#* }
		_proc_alive "$p" && [[ $(_proc_field "$p" 22) == "$s" ]] && echo "$e"
	done
	return 0
}

_tree_signal() { # signal "pid start"...
	local sig=$1 e
	shift
	for e in "$@"; do kill "-$sig" "${e% *}" 2>/dev/null || true; done
}

# stop_pid <name> [signal]: SIGTERM (or the signal given, e.g. KILL) to the
# process we started and to its children (a server's sessions); children
# still there after 2 s get SIGKILL (vsftpd's per-session processes ignore
# SIGTERM), the process itself after 20 s. A stale PID file (process gone, or
# PID reused by something else) is removed without signalling anything.
stop_pid() {
	local name=$1 sig=${2:-TERM} pid i e
	if ! pid=$(pid_of "$name"); then
		rm -f "$STATE_DIR/$name.pid" "$STATE_DIR/$name.ident"
		return 0
	fi
	local -a procs left kids
	mapfile -t procs < <(_tree "$pid")
	# The server first (so it accepts no new session), then the rest.
	kill "-$sig" "$pid" 2>/dev/null || true
	_tree_signal "$sig" "${procs[@]}"
	for ((i = 1; i <= 200; i++)); do
		mapfile -t left < <(_tree_alive "${procs[@]}")
		((${#left[@]} == 0)) && break
		if ((i == 20)); then
			kids=()
			for e in "${left[@]}"; do [[ ${e% *} != "$pid" ]] && kids+=("$e"); done
			_tree_signal KILL "${kids[@]}"
		fi
		sleep 0.1
	done
	if ((${#left[@]})); then
		echo "e2e: $name (pid $pid) still running after 20 s: SIGKILL" >&2
		_tree_signal KILL "${left[@]}"
		for ((i = 0; i < 50; i++)); do
			mapfile -t left < <(_tree_alive "${left[@]}")
			((${#left[@]} == 0)) && break
			sleep 0.1
		done
		((${#left[@]} == 0)) || die "could not stop $name (pid $pid)"
	fi
	rm -f "$STATE_DIR/$name.pid" "$STATE_DIR/$name.ident"
	echo "=== $(date -Is) stopped $name (SIG$sig)" >>"$STATE_DIR/$name.log"
	note "$name stopped"
}

# port_open <host> <port>
port_open() {
	(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# wait_port <host> <port> <timeout_s>: 0 once a TCP connect succeeds.
wait_port() {
	local host=$1 port=$2 deadline=$((SECONDS + $3))
	while ((SECONDS <= deadline)); do
		port_open "$host" "$port" && return 0
		sleep 0.1
	done
	return 1
}

# wait_port_closed <host> <port> <timeout_s>
wait_port_closed() {
	local host=$1 port=$2 deadline=$((SECONDS + $3))
	while ((SECONDS <= deadline)); do
		port_open "$host" "$port" || return 0
		sleep 0.1
	done
	return 1
}

# wait_log <file> <extended-regex> <timeout_s>: 0 once a line matches.
wait_log() {
	local file=$1 pattern=$2 deadline=$((SECONDS + $3))
	while ((SECONDS <= deadline)); do
		grep -qE -- "$pattern" "$file" 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}

# wait_banner <host> <port> <timeout_s>: 0 once the port greets with "220".
wait_banner() {
	local host=$1 port=$2 deadline=$((SECONDS + $3)) line
	while ((SECONDS <= deadline)); do
		# The braces keep 2>/dev/null to bash's "connection refused": on the
		# exec itself it would silence the caller's stderr for good.
		if { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null; then
			line=
			IFS= read -r -t 2 line <&3 || true
			exec 3>&- 3<&-
			[[ $line == 220* ]] && return 0
		fi
		sleep 0.1
	done
	return 1
}

# wait_ready <name> <host> <port> <timeout_s> [log-regex]: waits for the port
# (and the log line, if given); fails at once, with the log tail, if the
# process dies.
wait_ready() {
	local name=$1 host=$2 port=$3 deadline=$((SECONDS + $4)) pattern=${5:-}
	local log="$STATE_DIR/$name.log"
	while ((SECONDS <= deadline)); do
		if ! is_running "$name"; then
			tail -n 40 "$log" >&2 || true
			_ended "$(cat "$STATE_DIR/$name.pid" 2>/dev/null)"
			die "$name died while starting ($ENDED; ident [$(cat "$STATE_DIR/$name.ident" 2>/dev/null)]; log: $log)"
		fi
		if port_open "$host" "$port" && { [[ -z $pattern ]] || grep -qE -- "$pattern" "$log"; }; then
			return 0
		fi
		sleep 0.1
	done
	tail -n 40 "$log" >&2 || true
	die "$name not ready on $host:$port after $4 s (log: $log)"
}

# print_logs [name...]: the last E2E_LOG_LINES (200) lines of each server log
# in the state dir (all of them without names), for test failure diagnostics.
print_logs() {
	local n=${E2E_LOG_LINES:-200} f
	local -a files=()
	if (($#)); then
		for f in "$@"; do files+=("$STATE_DIR/$f.log"); done
	else
		shopt -s nullglob
		files=("$STATE_DIR"/*.log)
		shopt -u nullglob
	fi
	for f in "${files[@]}"; do
		[[ -f $f ]] || continue
		echo "----- $f (last $n lines) -----"
		tail -n "$n" "$f"
	done
}

# set_env_var <key> <value>: records KEY=VALUE in <state>/env, a file the
# tests can read (shell syntax, one assignment a line, no quoting needed).
set_env_var() {
	ensure_state_dir
	local f="$STATE_DIR/env" tmp lock
	# kafka.sh and ftp.sh may run at the same time.
	exec {lock}>"$STATE_DIR/.env.lock"
	flock "$lock"
	tmp=$(mktemp "$STATE_DIR/.env.XXXXXX")
	if [[ -f $f ]]; then grep -v "^$1=" "$f" >"$tmp" || true; else : >"$tmp"; fi
	echo "$1=$2" >>"$tmp"
	sort -o "$tmp" "$tmp"
	mv "$tmp" "$f"
	exec {lock}>&-
}

java_bin() {
	if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then echo "$JAVA_HOME/bin/java"; else command -v java || die "java not found (OpenJDK 17 needed)"; fi
}

pureftpd_bin() {
	if [[ -x $PUREFTPD_ROOT/usr/sbin/pure-ftpd ]]; then
		echo "$PUREFTPD_ROOT/usr/sbin/pure-ftpd"
	elif command -v pure-ftpd >/dev/null; then
		command -v pure-ftpd
	else
		die "pure-ftpd not installed: run scripts/e2e/install.sh"
	fi
}

purepw_bin() {
	if [[ -x $PUREFTPD_ROOT/usr/bin/pure-pw ]]; then
		echo "$PUREFTPD_ROOT/usr/bin/pure-pw"
	elif command -v pure-pw >/dev/null; then
		command -v pure-pw
	else
		die "pure-pw not installed: run scripts/e2e/install.sh"
	fi
}

# pkg_installed <package>: 0 if the Debian package is installed.
pkg_installed() {
	[[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) == ii* ]]
}

_apt_updated=0
apt_update_once() { # the package lists, refreshed once per script
	if ((_apt_updated == 0)); then
		apt-get update -qq >/dev/null || die "apt-get update failed"
		_apt_updated=1
	fi
}

# apt_install <package>...: installs those of the Debian packages that are
# not installed yet, as root; when all are, it runs no apt-get at all. The
# packages' init scripts are kept from starting services (a vsftpd on port
# 21); apt-get's output is kept in $CACHE_DIR/apt.log when it fails.
apt_install() {
	local p rc=0 own_policy=0
	local -a missing=()
	for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
	((${#missing[@]})) || return 0
	[[ $(id -u) == 0 ]] || die "the Debian packages ${missing[*]} are missing; install them as root: apt-get install ${missing[*]}"
	echo "$(basename "$0"): installing ${missing[*]}" >&2
	apt_update_once
	mkdir -p "$CACHE_DIR"
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		own_policy=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
		>"$CACHE_DIR/apt.log" 2>&1 || rc=$?
	((own_policy)) && rm -f /usr/sbin/policy-rc.d
	if ((rc)); then
		tail -n 30 "$CACHE_DIR/apt.log" >&2
		die "apt-get install ${missing[*]} failed (log: $CACHE_DIR/apt.log)"
	fi
	rm -f "$CACHE_DIR/apt.log"
}
