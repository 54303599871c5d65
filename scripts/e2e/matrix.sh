#!/usr/bin/env bash
# A compatibility matrix of independent FTP server implementations on
# loopback, for the end-to-end tests (ftp.sh runs vsftpd and pure-ftpd):
#
#   name                  port  passive      TLS       login            kind
#   proftpd               2130  33000-33099  none      ftpuser/ftppass  ProFTPD 1.3.8 (Debian)
#   proftpd-tls           2132  33100-33199  explicit  ftpuser/ftppass  ProFTPD, TLSRequired on, session reuse required
#   proftpd-implicit      2134  33200-33299  implicit  ftpuser/ftppass  ProFTPD, TLSOptions UseImplicitSSL
#   proftpd-active        2136  (refused)    none      ftpuser/ftppass  ProFTPD, PASV and EPSV denied: PORT/EPRT only
#   pyftpdlib             2138  33400-33499  none      ftpuser/ftppass  pyftpdlib (PyPI)
#   pyftpdlib-tls         2139  33500-33599  explicit  ftpuser/ftppass  pyftpdlib TLS_FTPHandler, TLS required
#   apache-ftpserver      2140  33600-33699  none      ftpuser/ftppass  Apache FtpServer (Maven Central)
#   apache-ftpserver-tls  2141  33700-33799  explicit  ftpuser/ftppass  Apache FtpServer, TLS required
#   inetutils-ftpd        2143  (ephemeral)  none      ftpgnu/ftppass   GNU inetutils ftpd under tcpsvd (Debian)
#
# Each one allows at most MATRIX_CAP (4) sessions per user or per IP; the
# fifth is refused (see README.md for each refusal). "/" of each user is
# $E2E_FTP_ROOT/<name>/home (chroot), owned by the user the files are
# written as (ftpuser; for inetutils-ftpd ftpgnu, or ftpgnu-<hash> under
# another E2E_FTP_ROOT).
#
#   scripts/e2e/matrix.sh start             start all (each waits for its 220 banner; implicit TLS: the handshake too)
#   scripts/e2e/matrix.sh stop              stop the ones we started (by PID)
#   scripts/e2e/matrix.sh status            exit 0 if all run, 3 if not
#   scripts/e2e/matrix.sh start-one NAME    start one (after stop-one)
#   scripts/e2e/matrix.sh stop-one NAME     stop one, SIGTERM (its sessions end too)
#   scripts/e2e/matrix.sh kill-one NAME     stop one with SIGKILL (a crash)
#   scripts/e2e/matrix.sh reset             empty the homes
#   scripts/e2e/matrix.sh env               print the FTP_MATRIX* and FTP_<NAME>_* keys (also in <state>/env)
#   scripts/e2e/matrix.sh logs              print the servers' logs
#   scripts/e2e/matrix.sh names             print the names, one a line, in order
#
# <state>/env gets FTP_MATRIX=name,name,... and for each name, with K its
# name in upper case and '-' as '_': FTP_K_ADDR, FTP_K_USER, FTP_K_PASS,
# FTP_K_HOME, FTP_K_TLS (none|explicit|implicit), FTP_K_CA (TLS only),
# FTP_K_VERSION, FTP_K_CAP, FTP_K_MODE (passive|active), FTP_K_KIND, and
# FTP_K_PASV, FTP_K_CAP_REPLY (the refusal) and FTP_K_CAP_STAGE (connect,
# USER or PASS: where the refusal comes). Values may hold spaces.
#
# MATRIX_NAMES=a,b limits every command to those; MATRIX_<K>_PORT and
# MATRIX_<K>_PASV (LOW-HIGH) move one; E2E_FTP_DEBUG=1 logs the protocol.
# Needs root and scripts/e2e/install.sh first.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$E2E_DIR/matrix-lib.sh"

MATRIX_HOST=127.0.0.1
E2E_FTP_ROOT=${E2E_FTP_ROOT:-/srv/ftp-e2e}
MATRIX_CAP=${MATRIX_CAP:-4}
MATRIX_IDLE=${MATRIX_IDLE:-600} # idle timeouts, control and data (s)
MATRIX_START_TIMEOUT=${MATRIX_START_TIMEOUT:-30}
MATRIX_STATE=$STATE_DIR/matrix
MATRIX_ALL=(proftpd proftpd-tls proftpd-implicit proftpd-active pyftpdlib pyftpdlib-tls
	apache-ftpserver apache-ftpserver-tls inetutils-ftpd)

FTP_USER=ftpuser # ftp.sh's system user (nologin): owns the files; the virtual users map to it
FTP_PASS=ftppass
# inetutils-ftpd logs in system users only (a shell from /etc/shells) and
# chroots them to their passwd home: one user per FTP root, so that matrices
# with another E2E_FTP_ROOT on the same machine keep their own homes.
if [[ $E2E_FTP_ROOT == /srv/ftp-e2e ]]; then
	GNU_USER=ftpgnu
else
	GNU_USER=ftpgnu-$(printf '%s' "$E2E_FTP_ROOT" | sha256sum | cut -c1-6)
fi
GNU_PASS=ftppass
KEYSTORE_PASS=ftp-pooler-e2e # Apache FtpServer's PKCS12 keystore (a copy of the test certificate)
# tcpsvd writes this to the connection it refuses (per-IP cap), then closes it.
GNU_CAP_REPLY="421 Too many connections from your IP address; closing control connection."

[[ $MATRIX_CAP =~ ^[1-9][0-9]*$ ]] || die "MATRIX_CAP must be a positive number, got '$MATRIX_CAP'"
[[ $MATRIX_IDLE =~ ^[1-9][0-9]*$ ]] || die "MATRIX_IDLE must be a positive number, got '$MATRIX_IDLE'"

# --- the instances ---------------------------------------------------------

# spec_of <name>: "kind port passive tls mode"
spec_of() {
	case $1 in
	proftpd) echo "proftpd 2130 33000-33099 none passive" ;;
	proftpd-tls) echo "proftpd 2132 33100-33199 explicit passive" ;;
	proftpd-implicit) echo "proftpd 2134 33200-33299 implicit passive" ;;
	proftpd-active) echo "proftpd 2136 - none active" ;;
	pyftpdlib) echo "pyftpdlib 2138 33400-33499 none passive" ;;
	pyftpdlib-tls) echo "pyftpdlib 2139 33500-33599 explicit passive" ;;
	apache-ftpserver) echo "apache-ftpserver 2140 33600-33699 none passive" ;;
	apache-ftpserver-tls) echo "apache-ftpserver 2141 33700-33799 explicit passive" ;;
	inetutils-ftpd) echo "inetutils-ftpd 2143 ephemeral none passive" ;;
	*) die "unknown matrix server '$1' (one of: ${MATRIX_ALL[*]})" ;;
	esac
}

key_of() { # proftpd-tls -> PROFTPD_TLS
	local k=${1^^}
	echo "${k//-/_}"
}
_field() { # name n
	local -a f
	read -r -a f <<<"$(spec_of "$1")"
	echo "${f[$2]}"
}
kind_of() { _field "$1" 0; }
tls_of() { _field "$1" 3; }
mode_of() { _field "$1" 4; }
port_of() {
	local v p
	v="MATRIX_$(key_of "$1")_PORT"
	p=${!v:-$(_field "$1" 1)}
	[[ $p =~ ^[0-9]+$ ]] || die "$v must be a port number, got '$p'"
	echo "$p"
}
pasv_of() { # LOW-HIGH, or "-" (passive refused) or "ephemeral" (no setting)
	local v p
	v="MATRIX_$(key_of "$1")_PASV"
	p=${!v:-$(_field "$1" 2)}
	[[ $p =~ ^[0-9]+-[0-9]+$ || $p == - || $p == ephemeral ]] || die "$v must be LOW-HIGH, got '$p'"
	echo "$p"
}
user_of() { if [[ $(kind_of "$1") == inetutils-ftpd ]]; then echo "$GNU_USER"; else echo "$FTP_USER"; fi; }
pass_of() { if [[ $(kind_of "$1") == inetutils-ftpd ]]; then echo "$GNU_PASS"; else echo "$FTP_PASS"; fi; }
home_of() { echo "$E2E_FTP_ROOT/$1/home"; }
proc_of() { echo "matrix-$1"; } # the name of its PID and log files in <state>
cert_file() { echo "$MATRIX_STATE/tls/cert.pem"; }
key_file() { echo "$MATRIX_STATE/tls/key.pem"; }

version_of() {
	case $(kind_of "$1") in
	proftpd) echo "ProFTPD $(cat "$PROFTPD_ROOT/VERSION-proftpd-core" 2>/dev/null || echo unknown)" ;;
	pyftpdlib) echo "pyftpdlib $PYFTPDLIB_VERSION" ;;
	apache-ftpserver) echo "Apache FtpServer $APACHE_FTPSERVER_VERSION" ;;
	inetutils-ftpd) echo "GNU inetutils ftpd $(cat "$INETUTILS_ROOT/VERSION-inetutils-ftpd" 2>/dev/null || echo unknown)" ;;
	esac
}

# cap_reply_of <name>: "STAGE REPLY", what a session over the cap gets.
cap_reply_of() {
	case $(kind_of "$1") in
	proftpd) echo "PASS 530 Sorry, the maximum number of clients ($MATRIX_CAP) for this user are already connected." ;;
	pyftpdlib) echo "connect 421 Too many connections from the same IP address." ;;
	apache-ftpserver) echo "USER 421 Maximum login limit has been reached." ;;
	inetutils-ftpd) echo "connect $GNU_CAP_REPLY" ;;
	esac
}

# The servers of the matrix: MATRIX_NAMES (comma-separated) or all, in
# order. NAMES are those a command works on (start-one: just one).
MATRIX_LIST=()
if [[ -n ${MATRIX_NAMES:-} ]]; then
	IFS=, read -r -a _want <<<"$MATRIX_NAMES"
	for _w in "${_want[@]}"; do spec_of "$_w" >/dev/null; done
	for _n in "${MATRIX_ALL[@]}"; do
		for _w in "${_want[@]}"; do if [[ $_w == "$_n" ]]; then MATRIX_LIST+=("$_n"); fi; done
	done
	((${#MATRIX_LIST[@]})) || die "MATRIX_NAMES='$MATRIX_NAMES' names no server"
else
	MATRIX_LIST=("${MATRIX_ALL[@]}")
fi
NAMES=("${MATRIX_LIST[@]}")
kinds() { # the kinds among NAMES, once each
	local n
	for n in "${NAMES[@]}"; do kind_of "$n"; done | awk '!seen[$0]++'
}

require_root() { [[ $(id -u) == 0 ]] || die "matrix.sh must run as root (chroot, system users, ports)"; }

# --- one-time setup (idempotent) ---------------------------------------------

check_installed() {
	local k
	for k in $(kinds); do
		case $k in
		proftpd)
			[[ -f ${PROFTPD_ROOT%/root}/.complete && -x $PROFTPD_ROOT/usr/sbin/proftpd && -f $PROFTPD_ROOT/usr/lib/proftpd/mod_tls.so ]] ||
				die "ProFTPD not in $PROFTPD_ROOT: run scripts/e2e/install.sh"
			;;
		pyftpdlib)
			[[ -f $PYFTPDLIB_HOME/.complete && -x $PYFTPDLIB_PYTHON ]] ||
				die "pyftpdlib not in $PYFTPDLIB_HOME: run scripts/e2e/install.sh"
			;;
		apache-ftpserver)
			[[ -f $APACHE_FTPSERVER_HOME/.complete ]] ||
				die "Apache FtpServer not in $APACHE_FTPSERVER_HOME: run scripts/e2e/install.sh"
			java_bin >/dev/null
			;;
		inetutils-ftpd)
			[[ -f ${INETUTILS_ROOT%/root}/.complete && -x $INETUTILS_ROOT/usr/sbin/ftpd && -x $INETUTILS_ROOT/usr/bin/tcpsvd ]] ||
				die "inetutils-ftpd not in $INETUTILS_ROOT: run scripts/e2e/install.sh"
			;;
		esac
	done
}

setup_users() {
	# ftpuser: created as ftp.sh does (ftp.sh sets its password; no server
	# here checks it).
	if ! getent passwd "$FTP_USER" >/dev/null; then
		useradd --system --user-group --no-create-home --home-dir "$E2E_FTP_ROOT/vsftpd/home" \
			--shell /usr/sbin/nologin --comment "ftp-pooler e2e" "$FTP_USER" ||
			die "useradd $FTP_USER failed"
	fi
	local n want=0
	for n in "${NAMES[@]}"; do [[ $(kind_of "$n") == inetutils-ftpd ]] && want=1; done
	((want)) || return 0
	# ftpgnu, for inetutils-ftpd: a system user whose home is the chroot
	# (/etc/ftpchroot lists it), with a shell that /etc/shells lists (ftpd
	# refuses others) and a password it checks against /etc/shadow.
	local home shell
	home=$(home_of inetutils-ftpd)
	if ! getent passwd "$GNU_USER" >/dev/null; then
		useradd --system --user-group --no-create-home --home-dir "$home" \
			--shell /bin/sh --comment "ftp-pooler e2e inetutils-ftpd" "$GNU_USER" ||
			die "useradd $GNU_USER failed"
	fi
	if [[ $(getent passwd "$GNU_USER" | cut -d: -f6) != "$home" ]]; then
		usermod --home "$home" "$GNU_USER" || die "usermod --home $home $GNU_USER failed"
	fi
	shell=$(getent passwd "$GNU_USER" | cut -d: -f7)
	if ! grep -qxF -- "$shell" /etc/shells; then
		usermod --shell /bin/sh "$GNU_USER" || die "usermod --shell /bin/sh $GNU_USER failed"
	fi
	echo "$GNU_USER:$GNU_PASS" | chpasswd || die "chpasswd for $GNU_USER failed"
	if ! grep -qxF "$GNU_USER" /etc/ftpchroot 2>/dev/null; then
		echo "$GNU_USER" >>/etc/ftpchroot
	fi
	if grep -qxF "$GNU_USER" /etc/ftpusers 2>/dev/null; then
		die "/etc/ftpusers denies $GNU_USER FTP logins: remove that line"
	fi
}

setup_dirs() {
	local n u
	mkdir -p "$MATRIX_STATE"
	for n in "${NAMES[@]}"; do
		u=$(user_of "$n")
		mkdir -p "$(home_of "$n")" "$MATRIX_STATE/$n"
		chown "$u:$u" "$(home_of "$n")"
		chmod 755 "$(home_of "$n")"
	done
}

# setup_cert: one certificate for every TLS server here, self-signed for IP
# 127.0.0.1 with CA:TRUE, so that the tests trust it as a CA file (as ftp.sh
# does for vsftps). Kept across restarts while valid.
setup_cert() {
	local dir="$MATRIX_STATE/tls" out
	mkdir -p "$dir"
	if [[ -f $dir/cert.pem && -f $dir/key.pem ]] &&
		openssl x509 -in "$dir/cert.pem" -noout -checkend 86400 >/dev/null 2>&1; then
		return 0
	fi
	if ! out=$(openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
		-keyout "$dir/key.pem.tmp" -out "$dir/cert.pem.tmp" \
		-subj "/CN=127.0.0.1/O=ftp-pooler e2e matrix" \
		-addext "subjectAltName=IP:127.0.0.1" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" \
		-addext "extendedKeyUsage=serverAuth" 2>&1); then
		echo "$out" >&2
		die "openssl could not make the FTPS certificate"
	fi
	chmod 600 "$dir/key.pem.tmp"
	mv "$dir/key.pem.tmp" "$dir/key.pem"
	mv "$dir/cert.pem.tmp" "$dir/cert.pem"
}

write_env() {
	local n k list cap stage
	list=$(
		IFS=,
		echo "${MATRIX_LIST[*]}"
	)
	set_env_var FTP_MATRIX "$list"
	for n in "${NAMES[@]}"; do
		k=FTP_$(key_of "$n")
		set_env_var "${k}_ADDR" "$MATRIX_HOST:$(port_of "$n")"
		set_env_var "${k}_USER" "$(user_of "$n")"
		set_env_var "${k}_PASS" "$(pass_of "$n")"
		set_env_var "${k}_HOME" "$(home_of "$n")"
		set_env_var "${k}_TLS" "$(tls_of "$n")"
		if [[ $(tls_of "$n") != none ]]; then set_env_var "${k}_CA" "$(cert_file)"; fi
		set_env_var "${k}_VERSION" "$(version_of "$n")"
		set_env_var "${k}_CAP" "$MATRIX_CAP"
		set_env_var "${k}_MODE" "$(mode_of "$n")"
		set_env_var "${k}_KIND" "$(kind_of "$n")"
		set_env_var "${k}_PASV" "$(pasv_of "$n")"
		cap=$(cap_reply_of "$n")
		stage=${cap%% *}
		set_env_var "${k}_CAP_STAGE" "$stage"
		set_env_var "${k}_CAP_REPLY" "${cap#* }"
	done
}

setup() {
	require_root
	check_installed
	ensure_state_dir
	setup_users
	setup_dirs
	setup_cert
	write_env
}

# --- per-server configuration and start ----------------------------------------

# ProFTPD: a virtual user (AuthUserFile, no PAM, no system password) with
# ftpuser's uid, chrooted to its home; standalone, in the foreground (-n).
proftpd_conf() {
	local name=$1 dir="$MATRIX_STATE/$1" port pasv tls uid gid hash conf
	port=$(port_of "$name")
	pasv=$(pasv_of "$name")
	tls=$(tls_of "$name")
	uid=$(id -u "$FTP_USER") gid=$(id -g "$FTP_USER")
	hash=$(openssl passwd -6 "$FTP_PASS") || die "openssl passwd failed"
	printf '%s:%s:%s:%s:ftp-pooler e2e:%s:/usr/sbin/nologin\n' "$FTP_USER" "$hash" "$uid" "$gid" "$(home_of "$name")" >"$dir/passwd.tmp"
	printf '%s:x:%s:\n' "$FTP_USER" "$gid" >"$dir/group.tmp"
	chmod 600 "$dir/passwd.tmp" "$dir/group.tmp"
	mv "$dir/passwd.tmp" "$dir/passwd"
	mv "$dir/group.tmp" "$dir/group"
	conf=$dir/proftpd.conf
	cat >"$conf.tmp" <<EOF
# Generated by scripts/e2e/matrix.sh; rewritten at every start.
ServerName "ftp-pooler e2e $name"
ServerType standalone
DefaultAddress $MATRIX_HOST
SocketBindTight on
UseIPv6 off
Port $port
PidFile $dir/proftpd.pid
ScoreboardFile $dir/proftpd.scoreboard
SystemLog $STATE_DIR/$(proc_of "$name").log
TransferLog $STATE_DIR/$(proc_of "$name").xfer.log
WtmpLog off
UseReverseDNS off
DelayEngine off
# The daemon's own identity; sessions run as the user that logged in.
User nobody
Group nogroup
Umask 022 022

AuthOrder mod_auth_file.c
AuthUserFile $dir/passwd
AuthGroupFile $dir/group
RequireValidShell off
DefaultRoot ~

AllowOverwrite on
AllowStoreRestart on
AllowRetrieveRestart on
UseEncoding UTF-8 UTF-8

MaxInstances 100
MaxClientsPerUser $MATRIX_CAP
TimeoutLogin 300
TimeoutIdle $MATRIX_IDLE
TimeoutNoTransfer $MATRIX_IDLE
TimeoutStalled $MATRIX_IDLE
EOF
	if [[ ${E2E_FTP_DEBUG:-} ]]; then echo "DebugLevel 5" >>"$conf.tmp"; fi
	if [[ $pasv == - ]]; then
		cat >>"$conf.tmp" <<EOF

# Active mode only: PORT and EPRT work, PASV and EPSV are refused (501).
<Limit PASV EPSV>
  DenyAll
</Limit>
EOF
	else
		echo "PassivePorts ${pasv%-*} ${pasv#*-}" >>"$conf.tmp"
	fi
	if [[ $tls != none ]]; then
		cat >>"$conf.tmp" <<EOF

# FTPS: TLS required on the control and the data connections; a data
# connection must resume the control connection's TLS session (mod_tls's
# default: no NoSessionReuseRequired).
ModulePath $PROFTPD_ROOT/usr/lib/proftpd
LoadModule mod_tls.c
TLSEngine on
TLSLog $STATE_DIR/$(proc_of "$name").tls.log
TLSProtocol TLSv1.2 TLSv1.3
TLSRequired on
TLSRSACertificateFile $(cert_file)
TLSRSACertificateKeyFile $(key_file)
TLSVerifyClient off
TLSRenegotiate none
EOF
		if [[ $tls == implicit ]]; then echo "TLSOptions UseImplicitSSL" >>"$conf.tmp"; fi
	fi
	mv "$conf.tmp" "$conf"
	echo "$conf"
}

start_proftpd() {
	local name=$1 conf
	conf=$(proftpd_conf "$name")
	start_bg "$(proc_of "$name")" "$PROFTPD_ROOT/usr/sbin/proftpd" -n -c "$conf"
}

# pyftpdlib: pyftpd.py (beside this script); it binds as root, loads the key,
# then runs as ftpuser.
start_pyftpdlib() {
	local name=$1 pasv
	pasv=$(pasv_of "$name")
	local -a args=(--address "$MATRIX_HOST" --port "$(port_of "$name")" --home "$(home_of "$name")"
		--user "$FTP_USER" --password "$FTP_PASS" --passive "$pasv"
		--max-cons 256 --max-cons-per-ip "$MATRIX_CAP" --idle "$MATRIX_IDLE" --run-as "$FTP_USER")
	if [[ $(tls_of "$name") == explicit ]]; then args+=(--tls explicit --cert "$(cert_file)" --key "$(key_file)"); fi
	if [[ ${E2E_FTP_DEBUG:-} ]]; then args+=(--debug); fi
	# -I: no user site-packages, no PYTHON* variables from the caller.
	start_bg "$(proc_of "$name")" "$PYFTPDLIB_PYTHON" -I "$E2E_DIR/pyftpd.py" "${args[@]}"
}

# Apache FtpServer: ApacheFtpd.java (beside this script), run as ftpuser
# (setpriv). What it reads lives in $E2E_FTP_ROOT/<name>/conf, which
# ftpuser can reach wherever the state dir is; the users file is Apache
# FtpServer's own users.properties, with its default SHA-512 hashes.
start_apache_ftpserver() {
	local name=$1 conf classes java launcher
	conf=$E2E_FTP_ROOT/$name/conf
	classes=$(apache_ftpserver_classes)
	java=$(java_bin)
	mkdir -p "$conf"
	chown "root:$FTP_USER" "$conf"
	chmod 750 "$conf"
	local hash
	hash=$(printf '%s' "$FTP_PASS" | sha512sum | cut -d' ' -f1)
	cat >"$conf/users.properties.tmp" <<EOF
# Generated by scripts/e2e/matrix.sh; rewritten at every start.
ftpserver.user.$FTP_USER.userpassword=$hash
ftpserver.user.$FTP_USER.homedirectory=$(home_of "$name")
ftpserver.user.$FTP_USER.enableflag=true
ftpserver.user.$FTP_USER.writepermission=true
ftpserver.user.$FTP_USER.maxloginnumber=$MATRIX_CAP
ftpserver.user.$FTP_USER.maxloginperip=$MATRIX_CAP
ftpserver.user.$FTP_USER.idletime=$MATRIX_IDLE
ftpserver.user.$FTP_USER.uploadrate=0
ftpserver.user.$FTP_USER.downloadrate=0
EOF
	cat >"$conf/settings.properties.tmp" <<EOF
# Generated by scripts/e2e/matrix.sh; rewritten at every start. Read by ApacheFtpd.java.
address=$MATRIX_HOST
port=$(port_of "$name")
passive.ports=$(pasv_of "$name")
idle.seconds=$MATRIX_IDLE
max.logins=100
users.file=$conf/users.properties
tls=$(tls_of "$name")
EOF
	if [[ $(tls_of "$name") != none ]]; then
		# Made anew at every start (one openssl call): a keystore kept by
		# mtime outlived a certificate made again within the same second,
		# and curl then met a certificate it did not trust.
		openssl pkcs12 -export -in "$(cert_file)" -inkey "$(key_file)" -name ftpd \
			-out "$conf/keystore.p12.tmp" -passout "pass:$KEYSTORE_PASS" || die "openssl pkcs12 failed"
		chown "root:$FTP_USER" "$conf/keystore.p12.tmp"
		chmod 640 "$conf/keystore.p12.tmp"
		mv "$conf/keystore.p12.tmp" "$conf/keystore.p12"
		printf 'keystore.file=%s\nkeystore.password=%s\n' "$conf/keystore.p12" "$KEYSTORE_PASS" >>"$conf/settings.properties.tmp"
	fi
	local f
	for f in users settings; do
		chown "root:$FTP_USER" "$conf/$f.properties.tmp"
		chmod 640 "$conf/$f.properties.tmp"
		mv "$conf/$f.properties.tmp" "$conf/$f.properties"
	done
	local protocol=warn
	if [[ ${E2E_FTP_DEBUG:-} ]]; then protocol=info; fi
	# The launcher is named after the main class, which java's command line
	# names too: what pid_of looks for.
	launcher=$MATRIX_STATE/$name/ApacheFtpd
	cat >"$launcher.tmp" <<EOF
#!/bin/sh
# Generated by scripts/e2e/matrix.sh: runs ApacheFtpd as $FTP_USER.
exec /usr/bin/setpriv --reuid=$FTP_USER --regid=$FTP_USER --init-groups -- \\
	env HOME=$conf "$java" -XX:-UsePerfData -XX:+UseSerialGC -Xms32m -Xmx512m \\
	-Djava.net.preferIPv4Stack=true \\
	-Dorg.slf4j.simpleLogger.showDateTime=true \\
	-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd\'T\'HH:mm:ss.SSSZ \\
	-Dorg.slf4j.simpleLogger.log.org.apache.ftpserver.listener.nio.FtpLoggingFilter=$protocol \\
	-cp "$APACHE_FTPSERVER_LIBS/*:$classes" ApacheFtpd "\$@"
EOF
	chmod 755 "$launcher.tmp"
	mv "$launcher.tmp" "$launcher"
	start_bg "$(proc_of "$name")" "$launcher" "$conf/settings.properties"
}

# GNU inetutils ftpd has no standalone mode on another port, no connection
# limit and no passive port range: it runs under tcpsvd (ipsvd), inetd-style,
# which enforces the per-IP cap and answers the connection over it.
start_inetutils_ftpd() {
	local name=$1
	# ftpd logs to syslog only; tcpsvd -v logs each connection to our log.
	local -a ftpd=("$INETUTILS_ROOT/usr/sbin/ftpd" --auth=default -t "$MATRIX_IDLE" -T "$((MATRIX_IDLE * 2))" -u 022)
	start_bg "$(proc_of "$name")" "$INETUTILS_ROOT/usr/bin/tcpsvd" -v -c 100 -C "$MATRIX_CAP:$GNU_CAP_REPLY\r\n" \
		-b 32 -l localhost "$MATRIX_HOST" "$(port_of "$name")" "${ftpd[@]}"
}

launch() { # name: starts it unless it runs; fails if the port is taken
	local name=$1 port
	port=$(port_of "$name")
	if is_running "$(proc_of "$name")"; then
		note "$name already running (pid $(pid_of "$(proc_of "$name")"))"
		return 0
	fi
	port_open "$MATRIX_HOST" "$port" && die "port $MATRIX_HOST:$port ($name) is taken by another process (ss -ltnp 'sport = :$port')"
	case $(kind_of "$name") in
	proftpd) start_proftpd "$name" ;;
	pyftpdlib) start_pyftpdlib "$name" ;;
	apache-ftpserver) start_apache_ftpserver "$name" ;;
	inetutils-ftpd) start_inetutils_ftpd "$name" ;;
	esac
}

# tls_banner <port>: 0 if a TLS handshake, verified against our CA, is
# followed by a 220 greeting (implicit FTPS).
tls_banner() {
	local out
	out=$(printf 'QUIT\r\n' | timeout 5 openssl s_client -connect "$MATRIX_HOST:$1" -quiet -ign_eof \
		-verify_return_error -verify_ip "$MATRIX_HOST" -CAfile "$(cert_file)" 2>/dev/null | head -n 1) || true
	[[ $out == 220* ]]
}

# wait_matrix_ready <name>: until its 220 greeting; fails fast if it died.
wait_matrix_ready() {
	local name=$1 port proc deadline=$((SECONDS + MATRIX_START_TIMEOUT))
	port=$(port_of "$name")
	proc=$(proc_of "$name")
	while ((SECONDS <= deadline)); do
		if ! is_running "$proc"; then
			tail -n 30 "$STATE_DIR/$proc.log" >&2 || true
			die "$name died while starting (log: $STATE_DIR/$proc.log)"
		fi
		if [[ $(tls_of "$name") == implicit ]]; then
			port_open "$MATRIX_HOST" "$port" && tls_banner "$port" && return 0
		else
			wait_banner "$MATRIX_HOST" "$port" 0 && return 0
		fi
		sleep 0.1
	done
	tail -n 30 "$STATE_DIR/$proc.log" >&2 || true
	die "$name gave no 220 banner on $MATRIX_HOST:$port within $MATRIX_START_TIMEOUT s"
}

stop_server() { # name [signal]
	local name=$1 port
	port=$(port_of "$name")
	stop_pid "$(proc_of "$name")" "${2:-TERM}"
	wait_port_closed "$MATRIX_HOST" "$port" 5 || die "$name stopped, yet $MATRIX_HOST:$port still listens (another process?)"
}

status() {
	local n pid rc=0
	for n in "${NAMES[@]}"; do
		if pid=$(pid_of "$(proc_of "$n")"); then
			echo "$n: running (pid $pid) on $MATRIX_HOST:$(port_of "$n"), $(version_of "$n"), TLS $(tls_of "$n"), $(mode_of "$n"), passive $(pasv_of "$n"), home $(home_of "$n")"
		else
			echo "$n: stopped"
			rc=3
		fi
	done
	return $rc
}

check_name() {
	[[ $# == 1 ]] || die "usage: matrix.sh ${cmd} NAME (one of: ${MATRIX_ALL[*]})"
	spec_of "$1" >/dev/null
}

cmd=${1:-}
case $cmd in
start)
	setup
	# Start them all, then wait for each: the JVMs start side by side.
	for n in "${NAMES[@]}"; do launch "$n"; done
	for n in "${NAMES[@]}"; do wait_matrix_ready "$n"; done
	;;
stop)
	for n in "${NAMES[@]}"; do stop_server "$n"; done
	;;
status) status ;;
start-one)
	shift
	check_name "$@"
	NAMES=("$1")
	setup
	launch "$1"
	wait_matrix_ready "$1"
	;;
stop-one)
	shift
	check_name "$@"
	stop_server "$1"
	;;
kill-one)
	shift
	check_name "$@"
	stop_server "$1" KILL
	;;
reset)
	for n in "${NAMES[@]}"; do
		h=$(home_of "$n")
		[[ -d $h ]] && find "$h" -mindepth 1 -delete
	done
	;;
env)
	require_root
	ensure_state_dir
	setup_dirs
	setup_cert
	write_env
	keys="FTP_MATRIX="
	for n in "${NAMES[@]}"; do keys+="|FTP_$(key_of "$n")_"; done
	grep -E "^($keys)" "$STATE_DIR/env"
	;;
logs)
	files=()
	for n in "${NAMES[@]}"; do files+=("$(proc_of "$n")" "$(proc_of "$n").xfer" "$(proc_of "$n").tls"); done
	print_logs "${files[@]}"
	;;
names) printf '%s\n' "${NAMES[@]}" ;;
build-tools) apache_ftpserver_classes >/dev/null ;;
*)
	echo "usage: $0 start|stop|status|start-one NAME|stop-one NAME|kill-one NAME|reset|env|logs|names" >&2
	exit 2
	;;
esac
