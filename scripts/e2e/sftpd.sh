#!/usr/bin/env bash
# Two SFTP servers on loopback for the end-to-end tests, independent
# implementations:
#
#   name     port  (env)               login                 root
#   sshd     2822  SFTPD_PORT          sftpuser/sftppass     $E2E_FTP_ROOT/sftp (chroot, internal-sftp);
#                                      sftpkey + key only    OpenSSH 9.2 (Debian), posix-rename
#   proftpd  2823  SFTPD_PROFTPD_PORT  sftpuser/sftppass     $E2E_FTP_ROOT/sftp-proftpd/home (DefaultRoot);
#                                                            ProFTPD 1.3.8 mod_sftp, RSA host key only,
#                                                            posix-rename turned off (the non-atomic path)
#
# OpenSSH: "/" of both users is the chroot; they write under /upload. Host
# keys (sshd: ed25519 and RSA; proftpd: RSA) are made once per state dir, so
# known_hosts stays valid across restarts; <state>/sftp/known_hosts holds
# both servers' keys as "[127.0.0.1]:PORT" lines, as ssh-keyscan writes them.
#
#   scripts/e2e/sftpd.sh start       start both (each waits for its SSH banner)
#   scripts/e2e/sftpd.sh stop        stop them (and their sessions)
#   scripts/e2e/sftpd.sh status      exit 0 if both run, 3 if not
#   scripts/e2e/sftpd.sh env         print addresses, users, key and known_hosts files
#   scripts/e2e/sftpd.sh logs        print their logs
#
# sshd comes from `apt-get download openssh-server` (not installed: no system
# sshd is started or changed), ProFTPD from the FTP matrix's packages, both
# unpacked by install.sh; ssh-keygen from openssh-client.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SFTP_HOST=127.0.0.1
SFTPD_PORT=${SFTPD_PORT:-2822}
SFTPD_PROFTPD_PORT=${SFTPD_PROFTPD_PORT:-2823}
E2E_FTP_ROOT=${E2E_FTP_ROOT:-/srv/ftp-e2e}
SFTP_USER=sftpuser SFTP_PASS=sftppass
SFTP_KEY_USER=sftpkey
SFTP_STATE=$STATE_DIR/sftp
SFTP_CHROOT=$E2E_FTP_ROOT/sftp
SFTP_AUTHORIZED_KEYS_DIR=$E2E_FTP_ROOT/sftp-authorized-keys
SSHD_ROOT=${SSHD_ROOT:-$CACHE_DIR/openssh/root}
PROFTPD_ROOT=${PROFTPD_ROOT:-$CACHE_DIR/proftpd/root}
PROFTPD_SFTP_HOME=$E2E_FTP_ROOT/sftp-proftpd/home
# MaxSessions as OpenSSH ships it; MaxStartups raised from 10:30:100 so the
# suites' bursts of logins are not dropped at random (a test sets its own).
SFTPD_MAX_SESSIONS=${SFTPD_MAX_SESSIONS:-10}
SFTPD_MAX_STARTUPS=${SFTPD_MAX_STARTUPS:-100:30:200}

sshd_env() { env LD_LIBRARY_PATH="$SSHD_ROOT/usr/lib/x86_64-linux-gnu" "$@"; }

ensure_users() {
	local u
	for u in "$SFTP_USER" "$SFTP_KEY_USER"; do
		id "$u" >/dev/null 2>&1 ||
			useradd --system --user-group --no-create-home --home-dir /upload --shell /usr/sbin/nologin "$u" ||
			die "useradd $u failed"
	done
	echo "$SFTP_USER:$SFTP_PASS" | chpasswd || die "chpasswd for $SFTP_USER failed"
	# No password, but not locked ("!"): sshd refuses locked accounts
	# even for key logins when it does not use PAM.
	usermod -p "*" "$SFTP_KEY_USER" || die "usermod $SFTP_KEY_USER failed"
	# Privilege separation: sshd refuses to start without its user and
	# an empty root-owned directory.
	id sshd >/dev/null 2>&1 ||
		useradd --system --no-create-home --home-dir /run/sshd --shell /usr/sbin/nologin sshd ||
		die "useradd sshd failed"
	mkdir -p /run/sshd
	chmod 755 /run/sshd
}

# The chroot and every directory above it must be root-owned and not
# writable by others, or sshd ends the session.
prepare_root() {
	local d=$SFTP_CHROOT
	mkdir -p "$d/upload"
	while [[ $d != / ]]; do
		chown root:root "$d"
		chmod go-w "$d"
		d=$(dirname "$d")
	done
	chown "$SFTP_USER:$SFTP_KEY_USER" "$SFTP_CHROOT/upload"
	chmod 775 "$SFTP_CHROOT/upload"
	# Both users write there: the key user is in the password user's group.
	usermod -a -G "$SFTP_USER" "$SFTP_KEY_USER" 2>/dev/null || true
}

make_keys() {
	mkdir -p "$SFTP_STATE"
	local t
	for t in ed25519 rsa; do
		[[ -f $SFTP_STATE/host_$t ]] ||
			ssh-keygen -q -t "$t" -N '' -C "ftp-pooler-e2e" -f "$SFTP_STATE/host_$t" ||
			die "ssh-keygen $t failed"
	done
	# mod_sftp reads RSA host keys in PEM.
	[[ -f $SFTP_STATE/proftpd_host_rsa ]] ||
		ssh-keygen -q -m PEM -t rsa -b 3072 -N '' -C "ftp-pooler-e2e" -f "$SFTP_STATE/proftpd_host_rsa" ||
		die "ssh-keygen proftpd host key failed"
	[[ -f $SFTP_STATE/client_key ]] ||
		ssh-keygen -q -t ed25519 -N '' -C "$SFTP_KEY_USER" -f "$SFTP_STATE/client_key" ||
		die "ssh-keygen client key failed"
	# sshd reads authorized_keys as the user, so the file must not sit in
	# the state dir: a checkout under a 0700 directory (mktemp -d) would
	# hide it ("Permission denied") and refuse the key user.
	install -d -m 755 "$SFTP_AUTHORIZED_KEYS_DIR" || die "cannot create $SFTP_AUTHORIZED_KEYS_DIR"
	install -m 644 "$SFTP_STATE/client_key.pub" "$SFTP_AUTHORIZED_KEYS_DIR/$SFTP_KEY_USER" ||
		die "cannot write $SFTP_AUTHORIZED_KEYS_DIR/$SFTP_KEY_USER"
	local name="[$SFTP_HOST]:$SFTPD_PORT"
	{
		for t in ed25519 rsa; do
			echo "$name $(cut -d' ' -f1,2 "$SFTP_STATE/host_$t.pub")"
		done
		echo "[$SFTP_HOST]:$SFTPD_PROFTPD_PORT $(cut -d' ' -f1,2 "$SFTP_STATE/proftpd_host_rsa.pub")"
	} >"$SFTP_STATE/known_hosts"
}

write_config() {
	cat >"$SFTP_STATE/sshd_config" <<EOF
ListenAddress $SFTP_HOST:$SFTPD_PORT
HostKey $SFTP_STATE/host_ed25519
HostKey $SFTP_STATE/host_rsa
PidFile $SFTP_STATE/sshd.pid
UsePAM no
PermitRootLogin no
AllowUsers $SFTP_USER $SFTP_KEY_USER
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile $SFTP_AUTHORIZED_KEYS_DIR/%u
# The key file is not in a home the user owns.
StrictModes no
Subsystem sftp internal-sftp
ForceCommand internal-sftp
ChrootDirectory $SFTP_CHROOT
DisableForwarding yes
MaxSessions $SFTPD_MAX_SESSIONS
MaxStartups $SFTPD_MAX_STARTUPS
LogLevel VERBOSE
EOF
	sshd_env "$SSHD_ROOT/usr/sbin/sshd" -t -f "$SFTP_STATE/sshd_config" || die "sshd rejects $SFTP_STATE/sshd_config"
}

# ProFTPD's mod_sftp: a virtual user with sftpuser's uid (AuthUserFile, no
# PAM), chrooted to its home, SFTP only on its port.
write_proftpd_config() {
	local uid gid hash
	uid=$(id -u "$SFTP_USER") gid=$(id -g "$SFTP_USER")
	hash=$(openssl passwd -6 "$SFTP_PASS") || die "openssl passwd failed"
	mkdir -p "$PROFTPD_SFTP_HOME"
	chown "$SFTP_USER:$SFTP_USER" "$PROFTPD_SFTP_HOME"
	printf '%s:%s:%s:%s:ftp-pooler e2e:%s:/usr/sbin/nologin\n' "$SFTP_USER" "$hash" "$uid" "$gid" "$PROFTPD_SFTP_HOME" >"$SFTP_STATE/proftpd.passwd"
	printf '%s:x:%s:\n' "$SFTP_USER" "$gid" >"$SFTP_STATE/proftpd.group"
	chmod 600 "$SFTP_STATE/proftpd.passwd" "$SFTP_STATE/proftpd.group"
	cat >"$SFTP_STATE/proftpd.conf" <<EOF
ServerName "ftp-pooler e2e sftp"
ServerType standalone
DefaultAddress $SFTP_HOST
SocketBindTight on
UseIPv6 off
Port $SFTPD_PROFTPD_PORT
PidFile $SFTP_STATE/proftpd.pid
ScoreboardFile $SFTP_STATE/proftpd.scoreboard
SystemLog $STATE_DIR/sftp-proftpd.log
WtmpLog off
UseReverseDNS off
DelayEngine off
User nobody
Group nogroup
Umask 022 022
AuthOrder mod_auth_file.c
AuthUserFile $SFTP_STATE/proftpd.passwd
AuthGroupFile $SFTP_STATE/proftpd.group
RequireValidShell off
DefaultRoot ~
AllowOverwrite on
MaxInstances 200
ModulePath $PROFTPD_ROOT/usr/lib/proftpd
LoadModule mod_sftp.c
SFTPEngine on
SFTPLog $STATE_DIR/sftp-proftpd.sftp.log
SFTPHostKey $SFTP_STATE/proftpd_host_rsa
SFTPAuthMethods password
SFTPCompression off
# Without posix-rename@openssh.com the agent replaces a file by removing it
# first: the suites exercise that path here.
SFTPExtensions -posixRename
EOF
	"$PROFTPD_ROOT/usr/sbin/proftpd" -t -c "$SFTP_STATE/proftpd.conf" >/dev/null 2>&1 ||
		die "proftpd rejects $SFTP_STATE/proftpd.conf"
}

# wait_ssh_banner <port> <timeout_s>: 0 once the port greets with "SSH-2.0".
wait_ssh_banner() {
	local port=$1 deadline=$((SECONDS + $2)) line
	while ((SECONDS <= deadline)); do
		# Braces: a bare exec 2>/dev/null would silence this script for good.
		if { exec 3<>"/dev/tcp/$SFTP_HOST/$port"; } 2>/dev/null; then
			line=$(timeout 2 head -c 8 <&3 || true)
			exec 3>&-
			[[ $line == SSH-2.0* ]] && return 0
		fi
		sleep 0.1
	done
	return 1
}

record_env() {
	set_env_var SFTP_OPENSSH_ADDR "$SFTP_HOST:$SFTPD_PORT"
	set_env_var SFTP_OPENSSH_USER "$SFTP_USER"
	set_env_var SFTP_OPENSSH_PASS "$SFTP_PASS"
	set_env_var SFTP_OPENSSH_KEY_USER "$SFTP_KEY_USER"
	set_env_var SFTP_OPENSSH_KEY_FILE "$SFTP_STATE/client_key"
	set_env_var SFTP_OPENSSH_KNOWN_HOSTS "$SFTP_STATE/known_hosts"
	set_env_var SFTP_OPENSSH_ROOT "$SFTP_CHROOT"
	set_env_var SFTP_PROFTPD_ADDR "$SFTP_HOST:$SFTPD_PROFTPD_PORT"
	set_env_var SFTP_PROFTPD_USER "$SFTP_USER"
	set_env_var SFTP_PROFTPD_PASS "$SFTP_PASS"
	set_env_var SFTP_PROFTPD_HOME "$PROFTPD_SFTP_HOME"
}

cmd_start() {
	[[ $(id -u) == 0 ]] || die "sftpd.sh must run as root (system users, chroot)"
	[[ -x $SSHD_ROOT/usr/sbin/sshd ]] || die "no sshd at $SSHD_ROOT: run scripts/e2e/install.sh"
	[[ -f $PROFTPD_ROOT/usr/lib/proftpd/mod_sftp.so ]] || die "no ProFTPD mod_sftp at $PROFTPD_ROOT: run scripts/e2e/install.sh"
	ensure_users
	prepare_root
	make_keys
	if ! is_running sshd; then
		write_config
		# -D: stay in the foreground, so start_bg holds its PID; -e: log
		# to stderr (our log file).
		start_bg sshd "$SSHD_ROOT/usr/sbin/sshd" -D -e -f "$SFTP_STATE/sshd_config"
		wait_ssh_banner "$SFTPD_PORT" 20 || {
			tail -n 30 "$STATE_DIR/sshd.log" >&2
			die "sshd does not answer on $SFTP_HOST:$SFTPD_PORT"
		}
	fi
	if ! is_running sftp-proftpd; then
		write_proftpd_config
		start_bg sftp-proftpd "$PROFTPD_ROOT/usr/sbin/proftpd" -n -c "$SFTP_STATE/proftpd.conf"
		wait_ssh_banner "$SFTPD_PROFTPD_PORT" 20 || {
			tail -n 30 "$STATE_DIR/sftp-proftpd.log" >&2
			die "ProFTPD mod_sftp does not answer on $SFTP_HOST:$SFTPD_PROFTPD_PORT"
		}
	fi
	record_env
}

case ${1:-} in
start) cmd_start ;;
stop)
	stop_pid sftp-proftpd
	stop_pid sshd
	;;
status) { is_running sshd && is_running sftp-proftpd; } || exit 3 ;;
env) record_env && grep '^SFTP_' "$STATE_DIR/env" ;;
logs) print_logs sshd sftp-proftpd ;;
*)
	echo "usage: $0 start|stop|status|env|logs" >&2
	exit 2
	;;
esac
