#!/usr/bin/env bash
# Checks the end-to-end servers for real: installs what is missing, starts
# Kafka and the three FTP servers, exercises each with kcat and curl, stops
# everything (also on failure or Ctrl-C) and checks nothing of ours listens.
# Prints PASS/FAIL per check and "N passed, M failed"; exits 1 on any failure.
# Usage: scripts/e2e/selftest.sh   (E2E_KEEP=1 leaves the servers running)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_PORT=${KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-19093}
BROKER=127.0.0.1:$KAFKA_PORT
VSFTPD_PORT=${VSFTPD_PORT:-2121}
PUREFTPD_PORT=${PUREFTPD_PORT:-2122}
VSFTPS_PORT=${VSFTPS_PORT:-2123}
E2E_FTP_ROOT=${E2E_FTP_ROOT:-/srv/ftp-e2e}
CONCURRENT=${SELFTEST_CONCURRENT:-60} # more than pure-ftpd's default 50 clients

passed=0 failed=0
work=$(mktemp -d /tmp/e2e-selftest.XXXXXX)
tag=selftest-$$-$RANDOM

cleanup() {
	local rc=$?
	if [[ ${E2E_KEEP:-0} != 1 ]]; then
		"$E2E_DIR/ftp.sh" stop || true
		"$E2E_DIR/kafka.sh" stop || true
	fi
	rm -rf "$work"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# check <description> <command...>: runs it, prints PASS or FAIL (with output).
check() {
	local desc=$1 out
	shift
	if out=$("$@" 2>&1); then
		echo "PASS $desc"
		passed=$((passed + 1))
	else
		echo "FAIL $desc"
		[[ -n $out ]] && tail -n 15 <<<"$out" | sed 's/^/    /'
		failed=$((failed + 1))
	fi
}

fail_msg() {
	echo "$*" >&2
	return 1
}

# --- install and start --------------------------------------------------------
"$E2E_DIR/install.sh" >/dev/null
t=$SECONDS
check "kafka: start (KRaft, topics created)" "$E2E_DIR/kafka.sh" start
echo "     kafka started in $((SECONDS - t)) s"
t=$SECONDS
check "ftp: start vsftpd, pure-ftpd, vsftps" "$E2E_DIR/ftp.sh" start
echo "     FTP servers started in $((SECONDS - t)) s"

# --- Kafka ------------------------------------------------------------------
kafka_metadata() { kcat -b "$BROKER" -L -m 10; }
kafka_topic_partitions() { # name count
	local md
	md=$(kafka_metadata) || return 1
	grep -qF "topic \"$1\" with $2 partitions:" <<<"$md" || fail_msg "topic $1 with $2 partitions not in metadata:"$'\n'"$md"
}
kafka_roundtrip() { # topic partition file
	local got
	kcat -b "$BROKER" -P -t "$1" -p "$2" -k "$tag" -X message.max.bytes=16777216 "$3" || return 1
	kcat -b "$BROKER" -C -t "$1" -p "$2" -o -1 -c 1 -e -D '' -m 20 \
		-X fetch.max.bytes=16777216 -X receive.message.max.bytes=17000000 >"$work/got" || return 1
	cmp -s "$3" "$work/got" || fail_msg "consumed $(wc -c <"$work/got") bytes, produced $(wc -c <"$3"): not the same"
}
kafka_no_autocreate() {
	kcat -b "$BROKER" -L -t "$tag-nope" -X allow.auto.create.topics=true -m 5 >/dev/null 2>&1 || true
	sleep 1
	! "$E2E_DIR/kafka.sh" list-topics | grep -qxF "$tag-nope" || fail_msg "topic $tag-nope was auto-created"
}

check "kafka: kcat -L answers on $BROKER" kafka_metadata
for spec in ftp-tasks:6 ftp-results:3 ftp-failures:3 ftp-tasks-dlq:3; do
	check "kafka: topic ${spec%:*} has ${spec#*:} partitions" kafka_topic_partitions "${spec%:*}" "${spec#*:}"
done
printf 'hello %s\n' "$tag" >"$work/small"
check "kafka: produce/consume a small keyed record (ftp-results)" kafka_roundtrip ftp-results 1 "$work/small"
head -c 1200000 /dev/urandom >"$work/big"
check "kafka: produce/consume a 1.2 MB record (ftp-tasks-dlq)" kafka_roundtrip ftp-tasks-dlq 0 "$work/big"
check "kafka: create-topic $tag 2" "$E2E_DIR/kafka.sh" create-topic "$tag" 2
check "kafka: topic $tag has 2 partitions" kafka_topic_partitions "$tag" 2
check "kafka: topics are not auto-created" kafka_no_autocreate

# --- FTP ----------------------------------------------------------------------
CA=$STATE_DIR/ftp/vsftps/cert.pem
# ftp_args <name>: sets URL, CURL (array) and HOME_DIR for a server.
ftp_args() {
	case $1 in
	vsftpd) URL=ftp://127.0.0.1:$VSFTPD_PORT CURL=(curl -sS --max-time 30 --user ftpuser:ftppass) ;;
	pureftpd) URL=ftp://127.0.0.1:$PUREFTPD_PORT CURL=(curl -sS --max-time 30 --user ftpuser2:ftppass2) ;;
	# --tls-max 1.2 as the agent does by default: vsftpd 3.0.3 cuts TLS 1.3
	# uploads short now and then ("426 Failure reading network stream").
	vsftps) URL=ftp://127.0.0.1:$VSFTPS_PORT CURL=(curl -sS --max-time 30 --user ftpuser:ftppass --ssl-reqd --tls-max 1.2 --cacert "$CA") ;;
	esac
	HOME_DIR=$E2E_FTP_ROOT/$1/home
}

ftp_login() { "${CURL[@]}" "$URL/" -o /dev/null; }
ftp_mkd_stor() { "${CURL[@]}" --ftp-create-dirs -T "$work/a.txt" "$URL/$tag/in/a.txt"; }
ftp_retr() {
	"${CURL[@]}" "$URL/$tag/in/a.txt" -o "$work/got"
	cmp -s "$work/a.txt" "$work/got" || fail_msg "downloaded file differs"
}
ftp_chroot() { # "/" must be the home directory
	cmp -s "$work/a.txt" "$HOME_DIR/$tag/in/a.txt" || fail_msg "$HOME_DIR/$tag/in/a.txt is not what was uploaded as /$tag/in/a.txt"
}
ftp_rename_over() {
	"${CURL[@]}" -T "$work/b.txt" "$URL/$tag/in/b.txt" || return 1
	"${CURL[@]}" -Q "RNFR $tag/in/b.txt" -Q "RNTO $tag/in/a.txt" "$URL/" -o /dev/null || return 1
	"${CURL[@]}" "$URL/$tag/in/a.txt" -o "$work/got" || return 1
	cmp -s "$work/b.txt" "$work/got" || fail_msg "a.txt after RNTO is not b.txt's content"
	! "${CURL[@]}" -I "$URL/$tag/in/b.txt" >/dev/null 2>&1 || fail_msg "b.txt still there after the rename"
}
ftp_size() {
	local want got
	want=$(wc -c <"$work/b.txt")
	got=$("${CURL[@]}" -I "$URL/$tag/in/a.txt" | tr -d '\r' | awk -F': ' '$1 == "Content-Length" { print $2 }')
	[[ $got == "$want" ]] || fail_msg "SIZE says '$got', want $want"
}
ftp_hold_sessions() { # CONCURRENT connections open at once, each greeted with 220
	local port=${URL##*:} i fd line last="" bad=0
	local -a fds=()
	for ((i = 0; i < CONCURRENT; i++)); do
		if exec {fd}<>"/dev/tcp/127.0.0.1/$port"; then fds+=("$fd"); else bad=$((bad + 1)); fi
	done 2>/dev/null
	for fd in "${fds[@]}"; do
		line=
		IFS= read -r -t 5 line <&"$fd" || true
		[[ $line == 220* ]] || { bad=$((bad + 1)) last=${line%$'\r'}; }
	done
	for fd in "${fds[@]}"; do exec {fd}>&-; done
	((bad == 0)) || fail_msg "$bad of $CONCURRENT connections not greeted with 220 (last: '$last')"
}
ftp_concurrent() { # CONCURRENT sessions at once, each a ~2 s download
	"${CURL[@]}" -T "$work/c.bin" "$URL/$tag/c.bin" || return 1
	local i pids=() bad=0
	for ((i = 0; i < CONCURRENT; i++)); do
		"${CURL[@]}" --limit-rate 128k "$URL/$tag/c.bin" -o "$work/c.$i" 2>"$work/c.$i.err" &
		pids+=($!)
	done
	for i in "${!pids[@]}"; do
		if ! wait "${pids[$i]}" || ! cmp -s "$work/c.bin" "$work/c.$i"; then
			bad=$((bad + 1))
			[[ $bad -le 3 ]] && cat "$work/c.$i.err"
		fi
	done
	rm -f "$work"/c.[0-9]*
	((bad == 0)) || fail_msg "$bad of $CONCURRENT concurrent downloads failed"
}
ftp_restart() { # fault injection: stop-one, port closed, start-one, login again
	local port=${URL##*:}
	"$E2E_DIR/ftp.sh" stop-one "$1" || return 1
	! port_open 127.0.0.1 "$port" || fail_msg "port $port still open after stop-one" || return 1
	! "${CURL[@]}" "$URL/" -o /dev/null 2>/dev/null || fail_msg "login worked while stopped" || return 1
	"$E2E_DIR/ftp.sh" start-one "$1" || return 1
	ftp_login
}

printf 'first file %s\n' "$tag" >"$work/a.txt"
printf 'second file, longer: %s\n' "$tag" >"$work/b.txt"
head -c 262144 /dev/urandom >"$work/c.bin"
for srv in vsftpd pureftpd vsftps; do
	ftp_args "$srv"
	check "$srv: login (LIST /)" ftp_login
	check "$srv: MKD + STOR into a new subdirectory" ftp_mkd_stor
	check "$srv: RETR returns the same bytes" ftp_retr
	check "$srv: chroot, / is $HOME_DIR" ftp_chroot
	check "$srv: RNFR/RNTO over an existing file" ftp_rename_over
	check "$srv: SIZE" ftp_size
	check "$srv: $CONCURRENT connections at once, all greeted" ftp_hold_sessions
	check "$srv: $CONCURRENT parallel downloads" ftp_concurrent
	check "$srv: stop-one, then start-one" ftp_restart "$srv"
done
vsftps_plain_refused() {
	! curl -sS --max-time 10 --user ftpuser:ftppass "ftp://127.0.0.1:$VSFTPS_PORT/" -o /dev/null 2>/dev/null ||
		fail_msg "plain (no TLS) login was accepted"
}
vsftps_cert() { # the certificate verifies as 127.0.0.1 against itself as CA
	openssl verify -CAfile "$CA" "$CA" >/dev/null &&
		openssl x509 -in "$CA" -noout -ext subjectAltName | grep -q 'IP Address:127.0.0.1'
}
# The server's newest TLS version: 1.3 like a stock server, or 1.2 with
# VSFTPS_TLS_MAX=1.2 (ftp.sh).
VSFTPS_TLS_MAX=${VSFTPS_TLS_MAX:-1.3}
vsftps_tls_versions() {
	local v
	v=$(curl -sS -v --max-time 10 --ssl-reqd --cacert "$CA" --user ftpuser:ftppass "ftp://127.0.0.1:$VSFTPS_PORT/" -o /dev/null 2>&1 | grep -o 'SSL connection using TLSv1\.[0-9]')
	[[ $v == *TLSv$VSFTPS_TLS_MAX ]] || fail_msg "negotiated '$v', want TLSv$VSFTPS_TLS_MAX" || return 1
	v=$(curl -sS -v --max-time 10 --tls-max 1.2 --ssl-reqd --cacert "$CA" --user ftpuser:ftppass "ftp://127.0.0.1:$VSFTPS_PORT/" -o /dev/null 2>&1 | grep -o 'SSL connection using TLSv1\.[0-9]')
	[[ $v == *TLSv1.2 ]] || fail_msg "with --tls-max 1.2 negotiated '$v', want TLSv1.2" || return 1
	if [[ $VSFTPS_TLS_MAX == 1.2 ]]; then
		! curl -sS --max-time 10 --tlsv1.3 --ssl-reqd --cacert "$CA" --user ftpuser:ftppass "ftp://127.0.0.1:$VSFTPS_PORT/" -o /dev/null 2>/dev/null ||
			fail_msg "TLS 1.3 was accepted though VSFTPS_TLS_MAX=1.2"
	fi
}
check "vsftps: plain FTP login refused" vsftps_plain_refused
check "vsftps: TLS $VSFTPS_TLS_MAX negotiated, TLS 1.2 on request" vsftps_tls_versions
check "vsftps: certificate has IP:127.0.0.1, verifies as its own CA" vsftps_cert
ftp_args vsftpd
check "vsftpd: wrong password refused" bash -c "! curl -sS --max-time 10 --user ftpuser:nope $URL/ -o /dev/null 2>/dev/null"

# --- stop ---------------------------------------------------------------------
if [[ ${E2E_KEEP:-0} != 1 ]]; then
	check "ftp: stop" "$E2E_DIR/ftp.sh" stop
	check "kafka: stop" "$E2E_DIR/kafka.sh" stop
	nothing_listens() {
		local p out=""
		for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$VSFTPD_PORT" "$PUREFTPD_PORT" "$VSFTPS_PORT"; do
			out+=$(ss -ltnpH "sport = :$p")
		done
		[[ -z $out ]] || fail_msg "still listening:"$'\n'"$out"
	}
	check "nothing listens on our ports after stop" nothing_listens
	no_pid_files() {
		local f
		f=$(ls "$STATE_DIR"/*.pid 2>/dev/null || true)
		[[ -z $f ]] || fail_msg "PID files left: $f"
	}
	check "no PID files left" no_pid_files
fi

# Clean the test's own files from the FTP homes.
for srv in vsftpd pureftpd vsftps; do rm -rf "${E2E_FTP_ROOT:?}/$srv/home/$tag"; done

echo "$passed passed, $failed failed"
if ((failed)); then
	echo "--- server logs ---"
	# shellcheck disable=SC2119 # no names: every log
	E2E_LOG_LINES=${E2E_LOG_LINES:-30} print_logs
	exit 1
fi
