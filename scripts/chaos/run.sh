#!/usr/bin/env bash
# The fault-injection suite (`make chaos`): 2 dispatchers and 3 agents as
# processes of the real binaries, against real Apache Kafka, vsftpd and
# pure-ftpd, run 5,000 tasks while agents, a dispatcher, vsftpd and the
# broker are killed, stopped and restarted and a zombie agent is cut off;
# then a table of checks is printed (e2e/realstack/chaos_test.go).
#
#   scripts/chaos/run.sh                       the suite
#   E2E_CHAOS_SEED=123 scripts/chaos/run.sh    replay a run's choices
#   scripts/chaos/run.sh -count=3              extra arguments go to go test
#
# Its servers use ports, FTP homes and a state directory of their own
# (env.sh here: .e2e-chaos, Kafka 29092, FTP 2221-2223, /srv/ftp-chaos), so
# it runs beside `make e2e`. It snapshots bin/ into the state directory
# first, so a `make build` elsewhere during the run does not change the
# binaries it restarts. scripts/with-servers.sh runs the test: it installs
# what is missing (scripts/e2e/install.sh), starts Kafka and the FTP servers
# with scripts/e2e (those already running are used and left running), stops
# those it started, also on failure or Ctrl-C, and on failure prints the
# servers' logs and the tail of every dispatcher and agent log of the failed
# test, E2E_LOG_LINES (60) lines each. E2E_TIMEOUT (45m) is go test's
# -timeout, E2E_RUN (^TestChaos$) its -run. Needs root on Debian 12 with Go,
# Java 17 and Maven.
set -euo pipefail
CHAOS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/chaos/env.sh
. "$CHAOS_DIR/env.sh"
# shellcheck source=scripts/e2e/lib.sh
. "$CHAOS_DIR/../e2e/lib.sh"
cd "$REPO_ROOT"
if [[ ! -x bin/dispatcher || ! -x bin/agent ]]; then make build; fi
ensure_state_dir
rm -rf "${STATE_DIR:?}/bin" "$STATE_DIR/realstack" "$STATE_DIR/go-test.log"
mkdir -p "$STATE_DIR/bin"
cp bin/dispatcher bin/agent "$STATE_DIR/bin/"

export E2E_LOG_LINES=${E2E_LOG_LINES:-60}
E2E_BIN_DIR=$STATE_DIR/bin exec "$REPO_ROOT/scripts/with-servers.sh" --label chaos --kafka --ftp --sftp \
	--go-test-log "$STATE_DIR/go-test.log" --process-logs "$STATE_DIR/realstack" \
	-- go test -tags 'e2e chaos' -count=1 -timeout "${E2E_TIMEOUT:-45m}" -v \
	-run "${E2E_RUN:-^TestChaos\$}" "$@" ./e2e/realstack/...
