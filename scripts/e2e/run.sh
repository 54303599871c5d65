#!/usr/bin/env bash
# The end-to-end suite (`make e2e`): the real bin/dispatcher and bin/agent
# against Apache Kafka, the FTP servers, the FTP compatibility matrix and
# Jaeger (the OTLP receiver): go test -tags e2e ./e2e/realstack/..., run by
# scripts/with-servers.sh, which installs what is missing, starts the
# servers (those already running are used and left running), and stops the
# ones it started, also on failure or Ctrl-C. On failure it prints the
# servers' logs and the tail of the dispatcher and agent logs of each test
# that failed (<state>/realstack/<test>/, all of them when go test names
# none); exits non-zero.
#
#   scripts/e2e/run.sh                      the whole suite
#   E2E_RUN=TestSeed scripts/e2e/run.sh     only tests matching (go test -run)
#   scripts/e2e/run.sh -short               extra arguments go to go test
#
# E2E_TAGS (default "e2e") and E2E_TIMEOUT (40m) set go test's -tags and
# -timeout. E2E_LOG_LINES (80) is how many lines of each log a failure
# prints. E2E_MATRIX=0 leaves out the FTP compatibility matrix (matrix.sh:
# ProFTPD, pyftpdlib, Apache FtpServer, inetutils ftpd); the tests skip it.
# E2E_SFTP=0 leaves out the SFTP servers (sftpd.sh: OpenSSH, ProFTPD
# mod_sftp), and the SFTP tests skip.
# bin/ is built first when a binary is missing. Needs root on Debian 12 with
# Go, Java 17 and Maven (see README.md here).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$REPO_ROOT"
if [[ ! -x bin/dispatcher || ! -x bin/agent ]]; then make build; fi
# Not the last run's: a failure before the tests must not print its logs.
rm -rf "$STATE_DIR/realstack" "$STATE_DIR/go-test.log"

servers=(--kafka --ftp --jaeger)
if [[ ${E2E_MATRIX:-1} != 0 ]]; then servers+=(--matrix); fi
if [[ ${E2E_SFTP:-1} != 0 ]]; then servers+=(--sftp); fi
args=(-tags "${E2E_TAGS:-e2e}" -count=1 -timeout "${E2E_TIMEOUT:-40m}" -v)
if [[ -n ${E2E_RUN:-} ]]; then args+=(-run "$E2E_RUN"); fi
exec "$REPO_ROOT/scripts/with-servers.sh" --label e2e "${servers[@]}" \
	--go-test-log "$STATE_DIR/go-test.log" --process-logs "$STATE_DIR/realstack" \
	-- go test "${args[@]}" "$@" ./e2e/realstack/...
