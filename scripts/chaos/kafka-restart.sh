#!/usr/bin/env bash
# Restarts the Kafka broker scripts/e2e/kafka.sh started, keeping its data
# (kafka.sh start would format a fresh data dir): the chaos suite's "broker
# restarted" fault.
#
#   scripts/chaos/kafka-restart.sh [TERM|KILL] [DOWN_SECONDS]
#
# It stops the broker with the signal given (TERM, a clean shutdown, by
# default; KILL for a crash), waits DOWN_SECONDS (0), and starts it again
# with the very command line it ran with, read from /proc before stopping,
# then waits until it serves again. Honours the E2E_STATE_DIR and
# KAFKA_PORT of scripts/e2e.
set -euo pipefail
# shellcheck source=scripts/e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"

sig=${1:-TERM}
down=${2:-0}
KAFKA_HOST=127.0.0.1
KAFKA_PORT=${KAFKA_PORT:-19092}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-120}

pid=$(pid_of kafka) || die "kafka is not running (no live PID in $STATE_DIR/kafka.pid): start it with scripts/e2e/kafka.sh start"
mapfile -d '' -t argv <"/proc/$pid/cmdline"
((${#argv[@]} > 0)) || die "cannot read the command line of kafka (pid $pid)"

stop_pid kafka "$sig"
wait_port_closed "$KAFKA_HOST" "$KAFKA_PORT" 30 || die "kafka stopped, yet $KAFKA_HOST:$KAFKA_PORT still listens"
sleep "$down"
# The log keeps growing across restarts; wait for this start's own line.
log=$STATE_DIR/kafka.log
before=$(grep -c 'Kafka Server started' "$log" 2>/dev/null || true)
start_bg kafka "${argv[@]}"
deadline=$((SECONDS + KAFKA_START_TIMEOUT))
while ((SECONDS <= deadline)); do
	is_running kafka || { tail -n 40 "$log" >&2; die "kafka died while restarting (log: $log)"; }
	now=$(grep -c 'Kafka Server started' "$log" 2>/dev/null || true)
	if ((now > before)) && port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
		echo "kafka restarted (pid $(pid_of kafka))"
		exit 0
	fi
	sleep 0.2
done
tail -n 40 "$log" >&2
die "kafka did not serve again within $KAFKA_START_TIMEOUT s (log: $log)"
