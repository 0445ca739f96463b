#!/usr/bin/env bash
# End-to-end suite: stormwatch against real components, all on 127.0.0.1 with free ports and a
# temporary directory.
#
#   Tansu 0.6.0 (a Kafka-API broker, in-memory storage)  <- input produced through librdkafka
#   target/release/stormwatch run                        -> alerts topic, DLQ, Alertmanager, /metrics
#   Prometheus (Debian) scraping it every 1 s with deploy/prometheus/ (its prometheus.yml, rules)
#   Alertmanager (Debian) with deploy/alertmanager/alertmanager.yml, receivers pointed at a local
#   webhook receiver (tests/e2e/receiver.py)
#
# It produces the generated `mixed` stream (an NHS-2016-style storm, an all-staff storm, benign
# traffic, malformed records) re-timed to end now and paced at E2E_SPEED x (default 120), cut
# a few minutes of stream time after the last storm alert so a storm is still active at the end,
# plus a few malformed records of its own; then checks the alerts topic (contract fields, and
# the same alerts as `stormwatch replay` of the same records), the DLQ (original bytes, reason
# headers), Alertmanager (the direct alert and Prometheus' rule; one page per storm),
# Prometheus' ALERTS, that no stormwatch health alert fires, every PromQL query of
# dashboards/stormwatch.json, and a clean SIGTERM shutdown. Every process it starts is stopped
# by PID on exit, also on failure.
#
# Installs what it needs when missing: Debian's prometheus and prometheus-alertmanager (apt),
# Tansu (cargo install, cached in $STORMWATCH_CI_CACHE/tansu, default ~/.cache/stormwatch-ci),
# confluent-kafka and PyYAML (a virtualenv in the same cache). E2E_KEEP=1 keeps the temporary
# directory (logs, configs, what was produced and read) also on success.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/tests/e2e

CACHE=${STORMWATCH_CI_CACHE:-$HOME/.cache/stormwatch-ci}
TANSU_VERSION=0.6.0
TANSU_ROOT=$CACHE/tansu
TANSU=$TANSU_ROOT/bin/tansu
VENV=$CACHE/e2e-venv
PY_REQUIREMENTS="confluent-kafka==2.16.1 PyYAML==6.0.3"
SPEED=${E2E_SPEED:-120}
EVENTS=${E2E_EVENTS:-20000}
PARTITIONS=4

T0=$(date +%s)
# The summary goes to the script's own stdout/stderr even when it runs from inside a redirect.
exec 3>&1 4>&2
say() { printf '[e2e %4ds] %s\n' "$(($(date +%s) - T0))" "$*"; }

# ------------------------------------------------------------------------------------------
# Processes, checks and the summary (shared with tests/e2e/postfix/run.sh).
SUITE=e2e
STEP_KEYWORD=E2E
STEP_SCRIPT=$HERE/e2e.py
summary_extra() {
    if [ -n "$WORK" ] && [ -f "$WORK/stormwatch.log" ]; then
        echo "  stormwatch log: $(grep -c '"level":"ERROR"' "$WORK/stormwatch.log" || true) errors, $(grep -c '"level":"WARN"' "$WORK/stormwatch.log" || true) warnings"
    fi
}
# shellcheck source=tests/e2e/harness.sh
source "$ROOT/tests/e2e/harness.sh"

# ------------------------------------------------------------------------------------------
# 1. Tools and the build.
say "installing what is missing (cache: $CACHE)"
mkdir -p "$CACHE"
if ! command -v prometheus >/dev/null || ! command -v prometheus-alertmanager >/dev/null ||
    ! command -v promtool >/dev/null || ! command -v amtool >/dev/null; then
    say "apt-get install prometheus prometheus-alertmanager"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-alertmanager >/dev/null
fi
if [ ! -x "$TANSU" ] || ! "$TANSU" --version 2>/dev/null | grep -q " $TANSU_VERSION\$"; then
    say "cargo install tansu $TANSU_VERSION (about 9 minutes on 2 cores; cached in $TANSU_ROOT)"
    cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore \
        --root "$TANSU_ROOT" --force
fi
"$TANSU" --version | grep -q " $TANSU_VERSION\$" || die "$TANSU is not Tansu $TANSU_VERSION"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/requirements" 2>/dev/null)" != "$PY_REQUIREMENTS" ]; then
    say "python venv $VENV: $PY_REQUIREMENTS"
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$VENV"
    fi
    # shellcheck disable=SC2086 # the list is words
    "$VENV/bin/pip" install -q --disable-pip-version-check $PY_REQUIREMENTS
    echo "$PY_REQUIREMENTS" >"$VENV/requirements"
fi
PY="$VENV/bin/python"
E2E() { "$PY" "$HERE/e2e.py" "$@"; }
say "prometheus $(prometheus --version 2>&1 | head -n1 | awk '{print $3}'), alertmanager $(prometheus-alertmanager --version 2>&1 | head -n1 | awk '{print $3}'), $("$TANSU" --version), librdkafka $("$PY" -c 'import confluent_kafka as c; print(c.libversion()[0])') (confluent-kafka)"

say "cargo build --release"
cargo build --release --quiet
SW=${CARGO_TARGET_DIR:-$ROOT/target}/release/stormwatch
[ -x "$SW" ] || die "no $SW after the build"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stormwatch-e2e.XXXXXX")
say "work directory $WORK"

read -r TANSU_PORT AM_PORT PROM_PORT SW_PORT < <(E2E free-ports 4)
BROKERS=127.0.0.1:$TANSU_PORT
AM=http://127.0.0.1:$AM_PORT
PROM=http://127.0.0.1:$PROM_PORT
SW_ADDR=127.0.0.1:$SW_PORT

# ------------------------------------------------------------------------------------------
# 2. The webhook receiver and Alertmanager with the shipped configuration.
start receiver "$PY" "$HERE/receiver.py" "$WORK/receiver.port" "$WORK/received.jsonl"
for _ in $(seq 1 50); do [ -s "$WORK/receiver.port" ] && break; sleep 0.1; done
[ -s "$WORK/receiver.port" ] || die "the webhook receiver did not start"
RECEIVER=http://127.0.0.1:$(cat "$WORK/receiver.port")

E2E am-config deploy/alertmanager/alertmanager.yml "$WORK/alertmanager.yml" "$RECEIVER"
amtool check-config "$WORK/alertmanager.yml" >"$WORK/amtool.log" 2>&1 ||
    { cat "$WORK/amtool.log"; die "amtool rejects the rewritten alertmanager.yml"; }
mkdir -p "$WORK/alertmanager-data"
start alertmanager prometheus-alertmanager \
    --config.file="$WORK/alertmanager.yml" \
    --storage.path="$WORK/alertmanager-data" \
    --web.listen-address="127.0.0.1:$AM_PORT" \
    --cluster.listen-address="" \
    --log.level=info
E2E wait-http "$AM/-/ready" --timeout 30 || die "Alertmanager did not become ready"

# ------------------------------------------------------------------------------------------
# 3. Tansu and the topics.
start tansu "$TANSU" broker \
    --storage-engine memory://tansu/ \
    --listener-url "tcp://127.0.0.1:$TANSU_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$TANSU_PORT"
E2E wait-port "$TANSU_PORT" --timeout 30 || die "Tansu does not listen on $BROKERS"
E2E create-topics "$BROKERS" mail-events:$PARTITIONS mail-storms:1 mail-events-dlq:1 \
    >"$WORK/topics.log" 2>&1 || { cat "$WORK/topics.log"; die "cannot create the topics on Tansu"; }
sed 's/^/  /' "$WORK/topics.log"

# ------------------------------------------------------------------------------------------
# 4. Prometheus with the shipped prometheus.yml and rules, every 1 s.
E2E prom-config deploy/prometheus/prometheus.yml "$WORK/prometheus.yml" \
    --stormwatch "$SW_ADDR" --alertmanager "127.0.0.1:$AM_PORT" --prometheus "127.0.0.1:$PROM_PORT"
promtool check config "$WORK/prometheus.yml" >"$WORK/promtool.log" 2>&1 ||
    { cat "$WORK/promtool.log"; die "promtool rejects the rewritten prometheus.yml"; }
start prometheus prometheus \
    --config.file="$WORK/prometheus.yml" \
    --storage.tsdb.path="$WORK/prometheus-data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" \
    --web.external-url="$PROM/" \
    --log.level=info
E2E wait-http "$PROM/-/ready" --timeout 60 || die "Prometheus did not become ready"

# ------------------------------------------------------------------------------------------
# 5. stormwatch.
E2E stormwatch-config "$WORK/stormwatch.toml" --brokers "$BROKERS" --listen "$SW_ADDR" \
    --alertmanager "$AM"
start stormwatch env STORMWATCH_LOG=info "$SW" run --config "$WORK/stormwatch.toml"
SW_PID=${PIDS[-1]}
E2E wait-http "http://$SW_ADDR/healthz" --timeout 60 || die "stormwatch /healthz did not answer"
if E2E wait-http "http://$SW_ADDR/readyz" --timeout 60; then
    say "stormwatch is ready (partitions assigned, caught up)"
else
    say "stormwatch /readyz is not 200 after 60 s; going on (the readiness check below reports it)"
fi

# ------------------------------------------------------------------------------------------
# 6. Input: the generated stream, re-timed and paced, plus malformed records.
"$SW" generate --scenario mixed --events "$EVENTS" >"$WORK/generated.jsonl"
# The cutoff: five minutes of stream time after the last storm_started/escalated of the whole
# stream, so that storm is still active when the input stops (it ends only after 30 quiet
# minutes, by stream or wall clock).
"$SW" replay "$WORK/generated.jsonl" >"$WORK/generated-alerts.jsonl" 2>"$WORK/generated-replay.log"
CUTOFF=$("$PY" - "$WORK/generated-alerts.jsonl" <<'EOF'
import json, sys
from datetime import datetime, timedelta
last = max(datetime.fromisoformat(a["at"].replace("Z", "+00:00"))
           for a in map(json.loads, open(sys.argv[1])) if a["kind"] != "storm_ended")
print((last + timedelta(minutes=5)).isoformat())
EOF
)
say "input: mixed scenario up to $CUTOFF (original stream time), at ${SPEED}x"
if ! in_step E2E produce "$BROKERS" mail-events "$WORK/generated.jsonl" --out "$WORK" --speed "$SPEED" \
    --cutoff "$CUTOFF" >"$WORK/produce.log" 2>&1; then
    sed 's/^/  /' "$WORK/produce.log"
    die "producing the input to Tansu failed"
fi
sed 's/^/  /' "$WORK/produce.log"
"$SW" replay "$WORK/produced.jsonl" >"$WORK/expected-alerts.jsonl" 2>"$WORK/expected-replay.log"
say "expected (replay of the produced records): $(wc -l <"$WORK/expected-alerts.jsonl") alerts"
say "stormwatch now reports: $(curl -fsS "http://$SW_ADDR/metrics" 2>/dev/null |
    grep -E '^stormwatch_(kafka_consumer_lag|caught_up|events_total)' | tr '\n' ' ' || true)"

# ------------------------------------------------------------------------------------------
# 7. Checks.
# The dashboard first: its rate windows (1m) still hold the input's last minute.
check "every dashboard query returns data from Prometheus" \
    E2E check-dashboard "$PROM" dashboards/stormwatch.json --instance "$SW_ADDR"
check "the alerts topic holds the storms (contract fields; same alerts as replay)" \
    E2E check-alerts "$BROKERS" mail-storms --expected "$WORK/expected-alerts.jsonl" \
    --save "$WORK/alerts-topic.jsonl" --timeout 60
check "the DLQ holds every malformed record with its bytes and reason headers" \
    E2E check-dlq "$BROKERS" mail-events-dlq --malformed "$WORK/malformed.json" \
    --source-topic mail-events --timeout 60
check "Alertmanager lists ReplyAllStorm from stormwatch's sink (source=stormwatch)" \
    E2E check-am "$AM" --rules "deploy/prometheus/rules/*.yml" --prometheus "$PROM" --timeout 30
check "stormwatch /readyz answers 200 after the input" \
    E2E wait-http "http://$SW_ADDR/readyz" --timeout 30
check "Prometheus: ALERTS{alertname=\"ReplyAllStorm\"} fires" \
    E2E check-prom-alert "$PROM" ReplyAllStorm --timeout 150
check "stormwatch_kafka_consumer_lag is 0 once everything is read" \
    E2E check-lag "http://$SW_ADDR/metrics" --timeout 15
check "Alertmanager lists ReplyAllStorm from Prometheus' rule" \
    E2E check-am "$AM" --rules "deploy/prometheus/rules/*.yml" --prometheus "$PROM" \
    --from-prometheus --timeout 30
check "one storm pages once (backstop inhibited, only the direct alert notified)" \
    E2E check-pages-once "$AM" --rules "deploy/prometheus/rules/*.yml" --prometheus "$PROM" \
    --received "$WORK/received.jsonl" --timeout 30
check "no stormwatch health alert fires, and Prometheus scrapes it (up == 1)" \
    E2E check-no-health-alerts "$PROM"

sigterm_check "SIGTERM stops stormwatch with exit 0 within 20 s" "$SW_PID"
say "where a restart starts reading (input stream time ended at $(tail -n1 "$WORK/produced.jsonl" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["timestamp"])')):"
E2E show-committed "$BROKERS" mail-events stormwatch-e2e || true

# ------------------------------------------------------------------------------------------
# 8. A restart on the same consumer group: it re-reads the last window of events and the
# alerts topic (Tansu's watermarks and all), and must announce nothing twice.
start stormwatch-restarted env STORMWATCH_LOG=info "$SW" run --config "$WORK/stormwatch.toml"
SW_PID=${PIDS[-1]}
if E2E wait-http "http://$SW_ADDR/readyz" --timeout 90; then
    say "restarted stormwatch is ready: $(grep -o '"message":"storms already announced[^}]*' "$WORK/stormwatch-restarted.log" | head -n1)"
    check "after a restart: nothing announced twice, active storms kept (topic, API, Alertmanager)" \
        E2E check-restart "$BROKERS" mail-storms --before "$WORK/alerts-topic.jsonl" \
        --storms "http://$SW_ADDR/api/v1/storms" --am "$AM" --settle 10
else
    record FAIL "after a restart: stormwatch is not ready (/readyz) within 90 s"
fi
sigterm_check "SIGTERM stops the restarted stormwatch with exit 0 within 20 s" "$SW_PID"
