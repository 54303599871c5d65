"""pyftpdlib as a standalone FTP server for the end-to-end matrix.

scripts/e2e/matrix.sh runs it with the venv's Python (pyftpdlib and
pyOpenSSL pinned there by install.sh):

    python pyftpd.py --address 127.0.0.1 --port 2138 --home DIR \
        --user ftpuser --password ftppass --passive 33400-33499 \
        --max-cons 256 --max-cons-per-ip 4 [--tls explicit --cert C --key K] \
        [--run-as ftpuser] [--debug]

One virtual user (DummyAuthorizer) whose "/" is --home, with every
permission. The server binds as root, loads the TLS key, then drops to
--run-as, so files it writes belong to that user. With --tls explicit the
control and the data connections must use TLS (AUTH TLS, PROT P).
"""

import argparse
import logging
import os
import pwd
import signal
import sys

import pyftpdlib
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import DTPHandler, FTPHandler
from pyftpdlib.log import config_logging
from pyftpdlib.servers import FTPServer


def port_range(s):
    lo, sep, hi = s.partition("-")
    if not sep or not lo.isdigit() or not hi.isdigit() or int(lo) > int(hi):
        raise argparse.ArgumentTypeError(f"want LOW-HIGH, got {s!r}")
    return range(int(lo), int(hi) + 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--home", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--passive", type=port_range, required=True)
    ap.add_argument("--banner", help="220 greeting (default: pyftpdlib's own)")
    ap.add_argument("--max-cons", type=int, default=256)
    ap.add_argument("--max-cons-per-ip", type=int, default=4)
    ap.add_argument("--idle", type=int, default=600, help="idle timeout, control and data (s)")
    ap.add_argument("--tls", choices=("none", "explicit"), default="none")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--run-as", help="user to switch to after binding")
    ap.add_argument("--debug", action="store_true", help="log every command and reply")
    a = ap.parse_args()

    config_logging(level=logging.DEBUG if a.debug else logging.INFO)
    os.umask(0o022)

    authorizer = DummyAuthorizer()
    # e l r a d f m w M T: every read, write, rename, delete, mkdir, chmod, mtime permission.
    authorizer.add_user(a.user, a.password, a.home, perm="elradfmwMT")

    if a.tls == "explicit":
        from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler

        if not a.cert:
            ap.error("--tls explicit needs --cert")
        handler = TLS_FTPHandler
        handler.certfile = a.cert
        handler.keyfile = a.key or a.cert
        handler.tls_control_required = True
        handler.tls_data_required = True
        dtp = TLS_DTPHandler
        # Load the key now, while still root (it is readable by root only).
        handler.get_ssl_context()
    else:
        handler = FTPHandler
        dtp = DTPHandler
    handler.authorizer = authorizer
    handler.passive_ports = a.passive
    handler.timeout = a.idle
    dtp.timeout = a.idle
    handler.dtp_handler = dtp
    if a.banner:
        handler.banner = a.banner

    server = FTPServer((a.address, a.port), handler)
    server.max_cons = a.max_cons
    server.max_cons_per_ip = a.max_cons_per_ip

    if a.run_as and os.getuid() == 0:
        pw = pwd.getpwnam(a.run_as)
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    # pyftpdlib's CWD changes into the user's directory and back into the
    # process's own working directory. Inherited from whoever started us (a
    # checkout under /root, say), that one may be closed to --run-as: the
    # way back then fails with EACCES, the session is dropped with the
    # client's next command unread (curl: "Connection reset by peer"), and
    # only because the process stays in the user's directory do later
    # sessions work. The home is one the user can always enter.
    os.chdir(a.home)

    # SIGTERM (matrix.sh stop): close every session, then exit 0.
    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    logging.getLogger("pyftpdlib").info(
        "pyftpdlib %s on %s:%d, tls %s, passive %d-%d, max_cons_per_ip %d, uid %d",
        pyftpdlib.__ver__, a.address, a.port, a.tls, a.passive[0], a.passive[-1],
        a.max_cons_per_ip, os.getuid(),
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
