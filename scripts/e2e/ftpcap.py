"""Opens N FTP sessions at once and reports how each ended: logged in, or refused.

    python3 ftpcap.py --addr 127.0.0.1:2130 --user ftpuser --password ftppass \
        [--tls none|explicit|implicit --ca cert.pem] [-n 5]

It logs in N times, one session after another, keeping every session open,
then prints one tab-separated line per session:

    <i> <stage> <reply> <after>

stage is "login" when the session got 230, else where the server refused it:
"connect" (no 220 greeting), "AUTH", "USER" or "PASS"; reply is the server's
last reply (lines joined by " | "); after is "closed" when the server closed
the connection after a refusal, "open" otherwise. Used by matrix-selftest.sh
to check each server's session cap; Python's standard library only.
"""

import argparse
import socket
import ssl
import sys
import time


def read_reply(f):
    """One FTP reply, multi-line replies joined; "<EOF>" if the server closed."""
    lines = []
    while True:
        raw = f.readline()
        if not raw:
            lines.append("<EOF>")
            return " | ".join(lines)
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        lines.append(line)
        if len(line) >= 4 and line[:3].isdigit() and line[3] == " ":
            return " | ".join(lines)
        if len(lines) == 1 and len(line) == 3 and line.isdigit():
            return line


def closed_by_server(sock):
    """True if the server has closed the connection (EOF or reset)."""
    try:
        sock.settimeout(3)
        sock.sendall(b"NOOP\r\n")
        data = sock.recv(4096)
        return data == b""
    except (ConnectionError, ssl.SSLError, OSError):
        return True


def session(host, port, user, password, tls, ctx):
    """Logs in once; returns (stage, reply, socket)."""
    s = socket.create_connection((host, port), timeout=10)
    if tls == "implicit":
        s = ctx.wrap_socket(s, server_hostname=host)
    f = s.makefile("rb")
    reply = read_reply(f)
    if not reply.startswith("220"):
        return "connect", reply, s
    if tls == "explicit":
        s.sendall(b"AUTH TLS\r\n")
        reply = read_reply(f)
        if not reply.startswith("234"):
            return "AUTH", reply, s
        s = ctx.wrap_socket(s, server_hostname=host)
        f = s.makefile("rb")
    s.sendall(f"USER {user}\r\n".encode())
    reply = read_reply(f)
    if reply.startswith("230"):
        return "login", reply, s
    if not reply.startswith("331"):
        return "USER", reply, s
    s.sendall(f"PASS {password}\r\n".encode())
    reply = read_reply(f)
    if reply.startswith("230"):
        return "login", reply, s
    return "PASS", reply, s


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--addr", required=True, help="HOST:PORT")
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--tls", choices=("none", "explicit", "implicit"), default="none")
    ap.add_argument("--ca", help="CA file to verify the server with (TLS)")
    ap.add_argument("-n", type=int, default=5, help="sessions to open (default 5)")
    a = ap.parse_args()
    host, _, port = a.addr.rpartition(":")
    ctx = None
    if a.tls != "none":
        ctx = ssl.create_default_context(cafile=a.ca)
    socks = []
    results = []
    for i in range(1, a.n + 1):
        try:
            stage, reply, s = session(host, int(port), a.user, a.password, a.tls, ctx)
            socks.append(s)
        except (OSError, ssl.SSLError) as e:
            stage, reply, s = "connect", f"<{type(e).__name__}: {e}>", None
        results.append((i, stage, reply, s))
    out = []
    for i, stage, reply, s in results:
        after = ""
        if stage != "login":
            after = "closed" if s is None or closed_by_server(s) else "open"
        out.append(f"{i}\t{stage}\t{reply}\t{after}")
    print("\n".join(out), flush=True)
    time.sleep(0.2)
    for s in socks:
        try:
            s.sendall(b"QUIT\r\n")
            s.close()
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
