#!/usr/bin/env bash
# Three real FTP servers on loopback for the end-to-end tests:
#
#   name      port  (env)               passive      login
#   vsftpd    2121  VSFTPD_PORT         30000-30999  ftpuser/ftppass    plain FTP
#   pureftpd  2122  PUREFTPD_PORT       31000-31999  ftpuser2/ftppass2  plain FTP, virtual user
#   vsftps    2123  VSFTPS_PORT         32000-32999  ftpuser/ftppass    explicit FTPS (AUTH TLS), TLS required,
#                                                                     TLS 1.2 and 1.3 like a stock server
#                                                                     (VSFTPS_TLS_MAX=1.2 caps it; see vsftps_openssl_conf)
#
# Every user is chrooted: "/" is its home under $E2E_FTP_ROOT (/srv/ftp-e2e):
# vsftpd/home, pureftpd/home, vsftps/home.
#
#   scripts/e2e/ftp.sh start              start all three (each waits for its 220 banner)
#   scripts/e2e/ftp.sh stop               stop the ones we started
#   scripts/e2e/ftp.sh status             exit 0 if all three run, 3 if not
#   scripts/e2e/ftp.sh start-one NAME     start one (fault injection: after stop-one)
#   scripts/e2e/ftp.sh stop-one NAME      stop one, SIGTERM (its sessions end too)
#   scripts/e2e/ftp.sh kill-one NAME      stop one with SIGKILL (a crash)
#   scripts/e2e/ftp.sh reset              empty the three homes
#   scripts/e2e/ftp.sh env                print addresses, users, CA file (also in <state>/env)
#   scripts/e2e/ftp.sh logs               print the servers' logs
#
# The FTPS certificate is self-signed for IP 127.0.0.1; the tests trust it as
# a CA file: FTP_VSFTPS_CA in <state>/env (<state>/ftp/vsftps/cert.pem).
# Needs scripts/e2e/install.sh first.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FTP_HOST=127.0.0.1
VSFTPD_PORT=${VSFTPD_PORT:-2121}
PUREFTPD_PORT=${PUREFTPD_PORT:-2122}
VSFTPS_PORT=${VSFTPS_PORT:-2123}
VSFTPD_PASV=${VSFTPD_PASV:-30000-30999}
PUREFTPD_PASV=${PUREFTPD_PASV:-31000-31999}
VSFTPS_PASV=${VSFTPS_PASV:-32000-32999}
E2E_FTP_ROOT=${E2E_FTP_ROOT:-/srv/ftp-e2e}
FTP_START_TIMEOUT=${FTP_START_TIMEOUT:-20}
FTP_MAX_CLIENTS=${FTP_MAX_CLIENTS:-200}

FTP_USER=ftpuser FTP_PASS=ftppass     # system user, vsftpd and vsftps
FTP_USER2=ftpuser2 FTP_PASS2=ftppass2 # pure-ftpd virtual user, runs as ftpuser's uid
PAM_SERVICE=ftp-pooler-e2e
FTP_STATE=$STATE_DIR/ftp
SERVERS=(vsftpd pureftpd vsftps)

port_of() {
	case $1 in
	vsftpd) echo "$VSFTPD_PORT" ;;
	pureftpd) echo "$PUREFTPD_PORT" ;;
	vsftps) echo "$VSFTPS_PORT" ;;
	*) die "unknown FTP server '$1' (one of: ${SERVERS[*]})" ;;
	esac
}
pasv_of() {
	case $1 in
	vsftpd) echo "$VSFTPD_PASV" ;;
	pureftpd) echo "$PUREFTPD_PASV" ;;
	vsftps) echo "$VSFTPS_PASV" ;;
	esac
}
home_of() { echo "$E2E_FTP_ROOT/$1/home"; }

require_root() { [[ $(id -u) == 0 ]] || die "ftp.sh must run as root (system user, PAM, chroot)"; }

# --- one-time setup (idempotent) ---------------------------------------------

setup_user() {
	if ! getent passwd "$FTP_USER" >/dev/null; then
		useradd --system --user-group --no-create-home --home-dir "$(home_of vsftpd)" \
			--shell /usr/sbin/nologin --comment "ftp-pooler e2e" "$FTP_USER" ||
			die "useradd $FTP_USER failed"
	fi
	# vsftpd enters the account's home before its local_root: an existing
	# account may name the home of another suite's root (e2e, chaos), gone
	# since, and every login would fail with "500 OOPS: cannot change
	# directory".
	local home
	home=$(getent passwd "$FTP_USER" | cut -d: -f6)
	[[ -z $home || -d $home ]] || mkdir -p "$home" || die "mkdir $home failed"
	# (Re)set the password every time: cheap, and a changed one can't linger.
	echo "$FTP_USER:$FTP_PASS" | chpasswd || die "chpasswd for $FTP_USER failed"
	# vsftpd authenticates through this PAM service: plain password check. The
	# Debian "vsftpd" service also demands a shell from /etc/shells (pam_shells),
	# which a nologin user has not. Which users may log in at all is limited by
	# each vsftpd's userlist, not here.
	local pam="/etc/pam.d/$PAM_SERVICE" want
	want=$'# Written by ftp-pooler scripts/e2e/ftp.sh: password login for its test FTP servers.\nauth\trequired\tpam_unix.so\naccount\trequired\tpam_unix.so\nsession\trequired\tpam_permit.so'
	[[ -f $pam && $(<"$pam") == "$want" ]] || printf '%s\n' "$want" >"$pam"
}

setup_dirs() {
	local s
	for s in "${SERVERS[@]}"; do
		mkdir -p "$(home_of "$s")" "$FTP_STATE/$s"
		chown "$FTP_USER:$FTP_USER" "$(home_of "$s")"
		chmod 755 "$(home_of "$s")"
	done
	# vsftpd's secure_chroot_dir: empty, root's, not writable by others.
	mkdir -p "$FTP_STATE/empty"
	chown root:root "$FTP_STATE/empty"
	chmod 555 "$FTP_STATE/empty"
}

setup_cert() {
	local dir="$FTP_STATE/vsftps"
	mkdir -p "$dir"
	# Keep a valid certificate across restarts (tests may have read it).
	if [[ -f $dir/cert.pem && -f $dir/key.pem ]] &&
		openssl x509 -in "$dir/cert.pem" -noout -checkend 86400 >/dev/null 2>&1; then
		return 0
	fi
	local out
	if ! out=$(openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
		-keyout "$dir/key.pem.tmp" -out "$dir/cert.pem.tmp" \
		-subj "/CN=127.0.0.1/O=ftp-pooler e2e" \
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
	set_env_var FTP_VSFTPD_ADDR "$FTP_HOST:$VSFTPD_PORT"
	set_env_var FTP_VSFTPD_USER "$FTP_USER"
	set_env_var FTP_VSFTPD_PASS "$FTP_PASS"
	set_env_var FTP_VSFTPD_HOME "$(home_of vsftpd)"
	set_env_var FTP_PUREFTPD_ADDR "$FTP_HOST:$PUREFTPD_PORT"
	set_env_var FTP_PUREFTPD_USER "$FTP_USER2"
	set_env_var FTP_PUREFTPD_PASS "$FTP_PASS2"
	set_env_var FTP_PUREFTPD_HOME "$(home_of pureftpd)"
	set_env_var FTP_VSFTPS_ADDR "$FTP_HOST:$VSFTPS_PORT"
	set_env_var FTP_VSFTPS_USER "$FTP_USER"
	set_env_var FTP_VSFTPS_PASS "$FTP_PASS"
	set_env_var FTP_VSFTPS_HOME "$(home_of vsftps)"
	set_env_var FTP_VSFTPS_CA "$FTP_STATE/vsftps/cert.pem"
	set_env_var FTP_VSFTPS_TLS_MAX "$(vsftps_tls_max)"
}

setup() {
	require_root
	command -v vsftpd >/dev/null || die "vsftpd not installed: run scripts/e2e/install.sh"
	pureftpd_bin >/dev/null
	vsftps_tls_max >/dev/null # a bad VSFTPS_TLS_MAX stops here
	ensure_state_dir
	setup_user
	setup_dirs
	setup_cert
	write_env
}

# --- per-server configuration ------------------------------------------------

# vsftpd_conf <name>: writes <state>/ftp/<name>/vsftpd.conf, prints its path.
vsftpd_conf() {
	local name=$1 dir="$FTP_STATE/$1" pasv port debug=NO
	[[ -n ${E2E_FTP_DEBUG:-} ]] && debug=YES
	port=$(port_of "$name")
	pasv=$(pasv_of "$name")
	printf '%s\n' "$FTP_USER" >"$dir/userlist"
	cat >"$dir/vsftpd.conf" <<EOF
# Generated by scripts/e2e/ftp.sh; rewritten at every start.
listen=YES
listen_ipv6=NO
listen_address=$FTP_HOST
listen_port=$port
# Foreground: the PID start_bg records is the server's.
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
# "/" is local_root for the user.
chroot_local_user=YES
allow_writeable_chroot=YES
local_root=$(home_of "$name")
pam_service_name=$PAM_SERVICE
userlist_enable=YES
userlist_deny=NO
userlist_file=$dir/userlist
pasv_enable=YES
pasv_min_port=${pasv%-*}
pasv_max_port=${pasv#*-}
port_enable=YES
connect_from_port_20=NO
max_clients=$FTP_MAX_CLIENTS
max_per_ip=$FTP_MAX_CLIENTS
idle_session_timeout=300
data_connection_timeout=300
seccomp_sandbox=NO
secure_chroot_dir=$FTP_STATE/empty
syslog_enable=NO
xferlog_enable=YES
xferlog_std_format=NO
vsftpd_log_file=$STATE_DIR/$name.xfer.log
log_ftp_protocol=$debug
ftpd_banner=ftp-pooler e2e $name ready.
EOF
	if [[ $name == vsftps ]]; then
		cat >>"$dir/vsftpd.conf" <<EOF
# Explicit FTPS (AUTH TLS) on the control port; no plain login or data.
ssl_enable=YES
implicit_ssl=NO
rsa_cert_file=$dir/cert.pem
rsa_private_key_file=$dir/key.pem
allow_anon_ssl=NO
force_local_logins_ssl=YES
force_local_data_ssl=YES
require_ssl_reuse=YES
ssl_sslv2=NO
ssl_sslv3=NO
ssl_tlsv1=YES
# vsftpd 3.0.3 defaults to DES-CBC3-SHA, which OpenSSL 3 no longer offers.
ssl_ciphers=HIGH:!aNULL:!MD5
debug_ssl=$debug
EOF
	fi
	echo "$dir/vsftpd.conf"
}

# vsftpd 3.0.3 predates TLS 1.3 (it has no ssl_tlsv1_2/1_3 options) and
# mishandles it: uploads over a TLS 1.3 data connection stop after ~100 KiB
# with "426 Failure reading network stream" (Go's crypto/tls: every time;
# curl: now and then); downloads work. A stock vsftpd 3.0.3 on OpenSSL 3
# negotiates TLS 1.3 all the same, so by default this one does too: clients
# must cope (the agent caps FTPS at TLS 1.2 unless an endpoint says
# tls_max_version = 1.3). VSFTPS_TLS_MAX=1.2 caps the server at TLS 1.2
# through an OpenSSL config of the vsftps process only.
vsftps_tls_max() {
	case ${VSFTPS_TLS_MAX:-1.3} in
	1.2 | 1.3) echo "${VSFTPS_TLS_MAX:-1.3}" ;;
	*) die "VSFTPS_TLS_MAX must be 1.2 or 1.3, got '${VSFTPS_TLS_MAX}'" ;;
	esac
}
vsftps_openssl_conf() {
	local f="$FTP_STATE/vsftps/openssl.cnf" max
	max=TLSv$(vsftps_tls_max)
	cat >"$f" <<EOF
# Generated by scripts/e2e/ftp.sh: OPENSSL_CONF of the vsftps process only.
openssl_conf = e2e_conf
[e2e_conf]
ssl_conf = e2e_ssl
[e2e_ssl]
system_default = e2e_tls
[e2e_tls]
MinProtocol = TLSv1.2
MaxProtocol = $max
CipherString = DEFAULT:@SECLEVEL=2
EOF
	echo "$f"
}

# pure-ftpd's virtual-user database, rebuilt at every start. pure-pw useradd
# would hash with argon2id at t=511, which makes every login take ~4 s here;
# a SHA-512 crypt hash (which pure-ftpd checks with crypt(3)) takes
# milliseconds. The line has pure-pw's layout: user:hash:uid:gid:gecos:home/./
# and 12 empty limit fields.
pureftpd_db() {
	local dir="$FTP_STATE/pureftpd" pw out hash uid gid
	pw=$(purepw_bin)
	hash=$(openssl passwd -6 "$FTP_PASS2") || die "openssl passwd failed"
	uid=$(id -u "$FTP_USER") gid=$(id -g "$FTP_USER")
	rm -f "$dir/pureftpd.passwd" "$dir/pureftpd.pdb"
	printf '%s:%s:%s:%s::%s/./::::::::::::\n' "$FTP_USER2" "$hash" "$uid" "$gid" "$(home_of pureftpd)" >"$dir/pureftpd.passwd"
	chmod 600 "$dir/pureftpd.passwd"
	if ! out=$("$pw" mkdb "$dir/pureftpd.pdb" -f "$dir/pureftpd.passwd" 2>&1); then
		echo "$out" >&2
		die "pure-pw mkdb failed"
	fi
	[[ -s $dir/pureftpd.pdb ]] || die "pure-pw made no $dir/pureftpd.pdb"
}

start_server() {
	local name=$1 port
	port=$(port_of "$name")
	if is_running "$name"; then
		note "$name already running (pid $(pid_of "$name"))"
		return 0
	fi
	port_open "$FTP_HOST" "$port" && die "port $FTP_HOST:$port ($name) is taken by another process (ss -ltnp 'sport = :$port')"
	case $name in
	vsftpd | vsftps)
		local conf
		conf=$(vsftpd_conf "$name")
		if [[ $name == vsftps ]]; then
			OPENSSL_CONF=$(vsftps_openssl_conf) START_BG_STDIN=log start_bg "$name" "$(command -v vsftpd)" "$conf"
		else
			START_BG_STDIN=log start_bg "$name" "$(command -v vsftpd)" "$conf"
		fi
		;;
	pureftpd)
		local dir="$FTP_STATE/pureftpd" pasv
		pasv=$(pasv_of pureftpd)
		pureftpd_db
		# -S bind, -p passive range, -c/-C client limits (default 50; the
		# listen backlog grows with -c), -l virtual users only, -A chroot,
		# -E no anonymous, -H no DNS, -U umask files:dirs, -u 1 any uid but
		# root, -O transfer log; no -B: stays in the foreground. Renames and
		# overwrites are allowed by default (no -G, -K, -r).
		start_bg pureftpd "$(pureftpd_bin)" \
			-S "$FTP_HOST,$port" -p "${pasv%-*}:${pasv#*-}" \
			-c "$FTP_MAX_CLIENTS" -C "$FTP_MAX_CLIENTS" \
			-l "puredb:$dir/pureftpd.pdb" -A -E -H -4 -U 133:022 -u 1 -I 15 \
			-g "$dir/pure-ftpd.pid" -O "clf:$STATE_DIR/pureftpd.xfer.log"
		;;
	esac
	wait_ftp_ready "$name" "$port"
}

# wait_ftp_ready <name> <port>: until the 220 greeting; fails fast if it died.
wait_ftp_ready() {
	local name=$1 port=$2 deadline=$((SECONDS + FTP_START_TIMEOUT))
	while ((SECONDS <= deadline)); do
		if ! is_running "$name"; then
			tail -n 30 "$STATE_DIR/$name.log" >&2 || true
			die "$name died while starting (log: $STATE_DIR/$name.log)"
		fi
		wait_banner "$FTP_HOST" "$port" 0 && return 0
		sleep 0.1
	done
	tail -n 30 "$STATE_DIR/$name.log" >&2 || true
	die "$name gave no 220 banner on $FTP_HOST:$port within $FTP_START_TIMEOUT s"
}

stop_server() { # name [signal]
	local name=$1 port
	port=$(port_of "$name")
	stop_pid "$name" "${2:-TERM}"
	wait_port_closed "$FTP_HOST" "$port" 5 || die "$name stopped, yet $FTP_HOST:$port still listens (another process?)"
}

status() {
	local s pid rc=0
	for s in "${SERVERS[@]}"; do
		if pid=$(pid_of "$s"); then
			echo "$s: running (pid $pid) on $FTP_HOST:$(port_of "$s"), passive $(pasv_of "$s"), home $(home_of "$s")"
		else
			echo "$s: stopped"
			rc=3
		fi
	done
	return $rc
}

check_name() {
	[[ $# == 1 ]] || die "usage: ftp.sh ${cmd} NAME (one of: ${SERVERS[*]})"
	port_of "$1" >/dev/null
}

cmd=${1:-}
case $cmd in
start)
	setup
	for s in "${SERVERS[@]}"; do start_server "$s"; done
	;;
stop)
	for s in "${SERVERS[@]}"; do stop_server "$s"; done
	;;
status) status ;;
start-one)
	shift
	check_name "$@"
	setup
	start_server "$1"
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
	for s in "${SERVERS[@]}"; do
		h=$(home_of "$s")
		[[ -d $h ]] && find "$h" -mindepth 1 -delete
	done
	;;
env)
	require_root
	ensure_state_dir
	setup_dirs
	setup_cert
	write_env
	grep -E '^(FTP_|KAFKA_)' "$STATE_DIR/env"
	;;
logs) print_logs vsftpd vsftpd.xfer pureftpd pureftpd.xfer vsftps vsftps.xfer ;;
*)
	echo "usage: $0 start|stop|status|start-one NAME|stop-one NAME|kill-one NAME|reset|env|logs" >&2
	exit 2
	;;
esac
