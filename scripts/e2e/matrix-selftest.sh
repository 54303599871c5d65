#!/usr/bin/env bash
# Checks every server of the FTP compatibility matrix with curl and
# ftpcap.py: uploads and downloads a 0-byte file, a 1 MiB file and
# "dir a/é 한글.bin" in new nested directories (sha256 both ways and on disk),
# SIZE, NLST, RNFR/RNTO and MKD with UTF-8 names, that a TLS server refuses
# plain FTP and the active-only one PASV, and that the session after the cap
# is refused with the reply recorded in <state>/env. Then it stops the
# matrix, checks that nothing is left listening, starts it again and stops
# it. Prints PASS/FAIL per check and "N passed, M failed"; exits 1 on any
# failure.
#
#   sudo scripts/e2e/matrix-selftest.sh
#   MATRIX_SELFTEST_BIG=1 ...   also a 200 MiB file each way
#   E2E_KEEP=1 ...              leave the servers running
#   MATRIX_NAMES=a,b ...        only those
#
# A matrix already running is used and left running (no stop/start checks).
# One it started is stopped also when it fails or is interrupted (unless
# E2E_KEEP=1). On failure it prints the servers' logs (E2E_LOG_LINES, 30).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) == 0 ]] || die "matrix-selftest.sh must run as root"
M="$E2E_DIR/matrix.sh"
PY=/usr/bin/python3
passed=0 failed=0
pass() {
	echo "PASS $*"
	passed=$((passed + 1))
}
fail() {
	echo "FAIL $*"
	failed=$((failed + 1))
}
check() { # description command...: PASS if the command succeeds
	local d=$1
	shift
	if "$@"; then pass "$d"; else fail "$d"; fi
}

# The servers start from a directory that ftpuser, whom they run as, cannot
# enter, as from a CI checkout under /root: pyftpdlib's first session failed
# that way ("Connection reset by peer", fixed in pyftpd.py), and a server
# that needs its working directory shows it here on any machine.
work=$(mktemp -d)
cd "$work"
started=0
# shellcheck disable=SC2317 # the EXIT trap
cleanup() {
	local rc=$?
	# A failed start or an aborted run must not leave the servers running.
	if ((started)) && [[ ${E2E_KEEP:-0} != 1 ]]; then "$M" stop || true; fi
	cd /
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if "$M" status >/dev/null 2>&1; then
	echo "matrix-selftest: using the matrix already running (it stays running)"
	"$M" env >/dev/null
else
	t=$SECONDS
	started=1
	"$M" start
	echo "matrix-selftest: matrix.sh start took $((SECONDS - t)) s"
fi
mapfile -t names < <("$M" names)

keyof() { # proftpd-tls -> FTP_PROFTPD_TLS
	local k=${1^^}
	echo "FTP_${k//-/_}"
}
envv() { # KEY: its value in <state>/env, empty if absent
	local l
	l=$(grep -m1 "^$1=" "$STATE_DIR/env") || return 0
	echo "${l#*=}"
}
urlpath() { "$PY" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$1"; }

: >"$work/zero.bin"
head -c 1048576 /dev/urandom >"$work/1m.bin"
cp "$work/1m.bin" "$work/utf.bin"
if [[ ${MATRIX_SELFTEST_BIG:-0} == 1 ]]; then head -c $((200 * 1048576)) /dev/urandom >"$work/big.bin"; fi
sha() { sha256sum "$1" | cut -d' ' -f1; }

run_id=selftest-$$
for n in "${names[@]}"; do
	k=$(keyof "$n")
	addr=$(envv "${k}_ADDR") user=$(envv "${k}_USER") pw=$(envv "${k}_PASS")
	tls=$(envv "${k}_TLS") mode=$(envv "${k}_MODE") home=$(envv "${k}_HOME") ca=$(envv "${k}_CA")
	cap=$(envv "${k}_CAP") cap_reply=$(envv "${k}_CAP_REPLY") cap_stage=$(envv "${k}_CAP_STAGE")
	echo "--- $n ($(envv "${k}_VERSION"), $addr, TLS $tls, $mode)"
	scheme=ftp
	opts=(-sS --max-time 120 -u "$user:$pw")
	case $tls in
	explicit) opts+=(--ssl-reqd --cacert "$ca") ;;
	implicit) opts+=(--cacert "$ca") scheme=ftps ;;
	esac
	# Apache FtpServer with TLS 1.3: curl's uploads often end in "426 Data
	# connection error" (see README.md); TLS 1.2 here, TLS 1.3 counted below.
	[[ $n == apache-ftpserver-tls ]] && opts+=(--tls-max 1.2)
	[[ $mode == active ]] && opts+=(--ftp-port 127.0.0.1)
	base="$scheme://$addr"
	d="$run_id"
	xfer() { # local-file remote-path: upload, download, compare, check the file on disk
		local f=$1 r=$2 u got
		u="$base/$(urlpath "$r")"
		if ! curl "${opts[@]}" --ftp-create-dirs -T "$f" "$u"; then
			fail "$n: upload $r"
			return
		fi
		got=$(curl "${opts[@]}" "$u" | sha256sum | cut -d' ' -f1) || true
		if [[ $got == "$(sha "$f")" ]]; then pass "$n: upload+download $r ($(stat -c %s "$f") bytes, sha256 equal)"; else fail "$n: download $r: sha256 $got"; fi
		if [[ -f $home/$r && $(sha "$home/$r") == "$(sha "$f")" && $(stat -c %U "$home/$r") == "$user" ]]; then
			pass "$n: $r on disk in $home, owned by $user"
		else
			fail "$n: $r on disk in $home ($(stat -c '%U %s' "$home/$r" 2>&1))"
		fi
	}
	xfer "$work/zero.bin" "$d/zero.bin"
	xfer "$work/1m.bin" "$d/1m.bin"
	xfer "$work/utf.bin" "$d/dir a/é 한글.bin"
	if [[ -f $work/big.bin ]]; then
		t=$SECONDS
		xfer "$work/big.bin" "$d/big.bin"
		echo "    (200 MiB up and down: $((SECONDS - t)) s)"
	fi
	size=$(curl "${opts[@]}" -I "$base/$(urlpath "$d/dir a/é 한글.bin")" | tr -d '\r' | sed -n 's/^Content-Length: //p')
	check "$n: SIZE of a UTF-8 name = $size" test "$size" == 1048576
	check "$n: NLST lists the UTF-8 name" bash -c 'curl "$@" | grep -qxF "é 한글.bin"' _ "${opts[@]}" -l "$base/$(urlpath "$d/dir a")/"
	check "$n: RNFR/RNTO and MKD with UTF-8 names" curl "${opts[@]}" -o /dev/null \
		-Q "RNFR $d/dir a/é 한글.bin" -Q "RNTO $d/dir a/ü 새 이름.bin" -Q "MKD $d/새 폴더" "$base/"
	check "$n: the renamed file and the new directory are there" test -f "$home/$d/dir a/ü 새 이름.bin" -a -d "$home/$d/새 폴더"
	if [[ $tls != none ]]; then
		# (implicit: the server waits for a TLS handshake, curl for a greeting)
		check "$n: a plain FTP login is refused" bash -c '! curl "$@" 2>/dev/null' _ -sS --max-time 5 -u "$user:$pw" -l "ftp://$addr/"
	fi
	if [[ $mode == active ]]; then
		check "$n: passive mode (EPSV/PASV) is refused" bash -c '! curl "$@" -o /dev/null 2>/dev/null' _ -sS --max-time 20 -u "$user:$pw" "$base/$(urlpath "$d/1m.bin")"
	fi
	if [[ $n == apache-ftpserver-tls ]]; then
		ok=0
		for _ in 1 2 3 4 5; do
			curl -sS --max-time 30 -u "$user:$pw" --ssl-reqd --cacert "$ca" --tls-max 1.3 -T "$work/1m.bin" "$base/$(urlpath "$d/tls13.bin")" 2>/dev/null && ok=$((ok + 1))
		done
		echo "    (info: TLS 1.3 uploads with curl: $ok of 5 worked)"
	fi
	# The session cap: cap logins work, the next is refused as recorded.
	out=$("$PY" "$E2E_DIR/ftpcap.py" --addr "$addr" --user "$user" --password "$pw" --tls "$tls" ${ca:+--ca "$ca"} -n $((cap + 1)))
	logins=$(awk -F'\t' '$2 == "login"' <<<"$out" | wc -l)
	last=$(tail -n 1 <<<"$out")
	IFS=$'\t' read -r _ got_stage got_reply got_after <<<"$last"
	if [[ $logins == "$cap" && $got_stage == "$cap_stage" && $got_reply == "$cap_reply" && $got_after == closed ]]; then
		pass "$n: $cap sessions log in, the next is refused at $got_stage: \"$got_reply\" and closed"
	else
		fail "$n: cap $cap: got $logins logins, then: $last (want $cap_stage \"$cap_reply\" closed)"
	fi
	rm -rf "${home:?}/$d"
done

if ((started)); then
	t=$SECONDS
	check "matrix.sh start while running is a no-op" "$M" start
	check "matrix.sh stop" "$M" stop
	mapfile -t ports < <(for n in "${names[@]}"; do envv "$(keyof "$n")_ADDR" | cut -d: -f2; done)
	still=$(ss -ltnH | awk '{print $4}' | grep -E "^127\.0\.0\.1:($(
		IFS='|'
		echo "${ports[*]}"
	))$" || true)
	check "nothing listens on the matrix ports after stop${still:+ (still: $still)}" test -z "$still"
	# shellcheck disable=SC2016 # $1 and $? are for bash -c
	check "matrix.sh status says stopped (exit 3)" bash -c '"$1" status >/dev/null; [[ $? == 3 ]]' _ "$M"
	t=$SECONDS
	check "matrix.sh start again" "$M" start
	echo "    (start: $((SECONDS - t)) s)"
	check "matrix.sh status" "$M" status
	if [[ ${E2E_KEEP:-0} != 1 ]]; then check "matrix.sh stop" "$M" stop; fi
fi

echo "$passed passed, $failed failed"
if ((failed)); then
	echo "--- server logs ---"
	E2E_LOG_LINES=${E2E_LOG_LINES:-30} "$M" logs
	exit 1
fi
