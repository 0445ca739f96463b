#!/usr/bin/env bash
# End-to-end: real Postfix -> real rsyslog (omkafka) -> Kafka -> stormwatch run with
# input.format = "postfix", all on 127.0.0.1 with free ports and a temporary directory.
#
#   Postfix (Debian), a private instance: SMTP on 127.0.0.1, the list all-staff@nhs.test
#     expanding to 3,000 recipients (virtual alias), every delivery to discard:, header_checks
#     INFO rules, its log in a file (maillog_file)
#   rsyslog (Debian, rsyslog-kafka), a private instance: tails that file (imfile) and ships
#     each line with deploy/rsyslog/stormwatch-omkafka.conf (broker and topic rewritten)
#   Kafka: `stormwatch mock-broker` (librdkafka's mock cluster on 127.0.0.1): Debian 12's
#     omkafka (librdkafka 2.0.2) cannot talk to Tansu 0.6.0 (README.md here says why)
#   target/release/stormwatch run, input.format = "postfix", alerts to the alerts topic
#
# It sends an original message to the list and five reply-alls over SMTP (In-Reply-To and
# References, References only, subject only), then checks each hop in turn: Postfix's log,
# the input topic, the storm on the alerts topic (thread key = the original's Message-ID,
# counts), `stormwatch replay --format postfix` of the shipped lines, a clean SIGTERM. Every
# process it starts is stopped by PID on exit, also on failure.
#
# Installs what it needs when missing: postfix, rsyslog, rsyslog-kafka (apt; postfix preseeded
# to "No configuration", so no system instance is set up), confluent-kafka (the virtualenv of
# tests/e2e, cached in ${STORMWATCH_CI_CACHE:-~/.cache/stormwatch-ci}). E2E_KEEP=1 keeps the
# temporary directory (logs, configs, what was sent and read) also on success.
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
HERE=$ROOT/tests/e2e/postfix

CACHE=${STORMWATCH_CI_CACHE:-$HOME/.cache/stormwatch-ci}
VENV=$CACHE/e2e-venv
# The same virtualenv as tests/e2e/run.sh (same requirements, so neither rebuilds it).
PY_REQUIREMENTS="confluent-kafka==2.16.1 PyYAML==6.0.3"
LIST=all-staff@nhs.test
LIST_SIZE=3000
INPUT_TOPIC=mail-log
ALERTS_TOPIC=mail-storms
DLQ_TOPIC=mail-events-dlq

T0=$(date +%s)
exec 3>&1 4>&2
say() { printf '[postfix-e2e %4ds] %s\n' "$(($(date +%s) - T0))" "$*"; }

# ------------------------------------------------------------------------------------------
# Processes, checks and the summary (shared with tests/e2e/run.sh).
SUITE="postfix e2e"
STEP_KEYWORD=PF
STEP_SCRIPT=$HERE/postfix_e2e.py
EXTRA_LOGS=(maillog-tail)
before_summary() { # Postfix's log without the 3,000 discard lines per message, for show_logs
    if [ -n "$WORK" ] && [ -f "$WORK/postfix/log/maillog" ]; then
        grep -v 'postfix/discard\[' "$WORK/postfix/log/maillog" >"$WORK/maillog-tail.log" || true
    fi
}
# shellcheck source=tests/e2e/harness.sh
source "$ROOT/tests/e2e/harness.sh"

# ------------------------------------------------------------------------------------------
# 1. Tools and the build.
say "installing what is missing (cache: $CACHE)"
mkdir -p "$CACHE"
APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
have_omkafka() { compgen -G '/usr/lib/*/rsyslog/omkafka.so' >/dev/null; }
if ! command -v postfix >/dev/null || ! command -v rsyslogd >/dev/null || ! have_omkafka; then
    say "apt-get install postfix rsyslog rsyslog-kafka (postfix: No configuration)"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    echo "postfix postfix/mailname string nhs.test" | debconf-set-selections
    apt_install postfix rsyslog rsyslog-kafka
fi
have_omkafka || die "no omkafka.so after installing rsyslog-kafka"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/requirements" 2>/dev/null)" != "$PY_REQUIREMENTS" ]; then
    say "python venv $VENV: $PY_REQUIREMENTS"
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        apt_install python3-venv
        python3 -m venv "$VENV"
    fi
    # shellcheck disable=SC2086 # the list is words
    "$VENV/bin/pip" install -q --disable-pip-version-check $PY_REQUIREMENTS
    echo "$PY_REQUIREMENTS" >"$VENV/requirements"
fi
PY="$VENV/bin/python"
PF() { "$PY" "$HERE/postfix_e2e.py" "$@"; }
say "postfix $(postconf -d -h mail_version 2>/dev/null), $(rsyslogd -v | head -n1 | awk '{print "rsyslog", $2}'), librdkafka $(dpkg-query -W -f '${Version}' librdkafka1 2>/dev/null) (omkafka's), Python $("$PY" -c 'import sys; print(sys.version.split()[0])')"

say "cargo build --release"
cargo build --release --quiet
SW=${CARGO_TARGET_DIR:-$ROOT/target}/release/stormwatch
[ -x "$SW" ] || die "no $SW after the build"
"$SW" mock-broker --help >/dev/null 2>&1 || die "$SW has no mock-broker subcommand"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stormwatch-postfix-e2e.XXXXXX")
# Postfix's unprivileged daemons and postlogd work below it.
chmod 755 "$WORK"
say "work directory $WORK"
read -r SMTP_PORT SW_PORT < <("$PY" "$ROOT/tests/e2e/e2e.py" free-ports 2)
SW_ADDR=127.0.0.1:$SW_PORT

# ------------------------------------------------------------------------------------------
# 2. Kafka: librdkafka's mock cluster, with the topics.
start broker "$SW" mock-broker --address-file "$WORK/broker.address" \
    --topic "$INPUT_TOPIC:1" --topic "$ALERTS_TOPIC:1" --topic "$DLQ_TOPIC:1"
for _ in $(seq 1 100); do [ -s "$WORK/broker.address" ] && break; sleep 0.1; done
[ -s "$WORK/broker.address" ] || die "the mock broker did not announce its address"
BROKERS=$(cat "$WORK/broker.address")
say "Kafka (mock cluster) at $BROKERS: $INPUT_TOPIC, $ALERTS_TOPIC, $DLQ_TOPIC"

# ------------------------------------------------------------------------------------------
# 3. Postfix: a private instance under $WORK/postfix.
PFX=$WORK/postfix
mkdir -p "$PFX/etc" "$PFX/queue" "$PFX/data" "$PFX/log"
chown postfix:postfix "$PFX/data"
sed -e "s|@WORK@|$WORK|g" "$HERE/main.cf.in" >"$PFX/etc/main.cf"
cp /usr/share/postfix/master.cf.dist "$PFX/etc/master.cf"
# SMTP on the free port only; postlogd for maillog_file; no chroot (the queue is a temporary
# directory, not a prepared chroot).
postconf -c "$PFX/etc" -M# smtp/inet
postconf -c "$PFX/etc" -Me "127.0.0.1:$SMTP_PORT/inet = 127.0.0.1:$SMTP_PORT inet n - n - - smtpd"
postconf -c "$PFX/etc" -Me "postlog/unix-dgram = postlog unix-dgram n - n - 1 postlogd"
postconf -c "$PFX/etc" -F '*/*/chroot = n'
# The shipped header_checks rules and main.cf fragment, installed as the README says.
for f in deploy/postfix/header_checks deploy/postfix/main.cf.fragment; do
    [ -f "$f" ] || die "$f is missing"
done
cp deploy/postfix/header_checks "$PFX/etc/header_checks.stormwatch"
sed -e "s|/etc/postfix/header_checks.stormwatch|$PFX/etc/header_checks.stormwatch|g" \
    deploy/postfix/main.cf.fragment >>"$PFX/etc/main.cf"
[ "$(postconf -c "$PFX/etc" -h header_checks)" = "regexp:$PFX/etc/header_checks.stormwatch" ] ||
    die "deploy/postfix/main.cf.fragment does not set header_checks to the shipped rules"
"$PY" - "$PFX/etc/virtual" "$LIST" "$LIST_SIZE" <<'EOF'
import sys
path, alias, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(path, "w") as f:
    # One alias, its members as continuation lines (a line starting with whitespace).
    f.write(alias + "\n")
    for i in range(1, n + 1):
        f.write(f"    staff{i:04d}@staff.nhs.test{',' if i < n else ''}\n")
EOF
postmap -c "$PFX/etc" "hash:$PFX/etc/virtual"
[ "$(postmap -c "$PFX/etc" -q "$LIST" "hash:$PFX/etc/virtual" | tr ',' '\n' | grep -c '@staff.nhs.test')" = "$LIST_SIZE" ] ||
    die "the virtual alias $LIST does not expand to $LIST_SIZE recipients"
postfix -c "$PFX/etc" check >"$WORK/postfix-check.log" 2>&1 ||
    { cat "$WORK/postfix-check.log"; die "postfix check failed"; }
# Postfix writes its log timestamps in local time, without a zone: UTC, which stormwatch's
# input.postfix.utc_offset says (the master passes TZ on to its daemons).
TZ=UTC postfix -c "$PFX/etc" start >"$WORK/postfix-start.log" 2>&1 ||
    { cat "$WORK/postfix-start.log"; die "postfix start failed"; }
for _ in $(seq 1 50); do [ -s "$PFX/queue/pid/master.pid" ] && break; sleep 0.1; done
[ -s "$PFX/queue/pid/master.pid" ] || die "Postfix wrote no master.pid"
adopt postfix-master "$(tr -d ' \n' <"$PFX/queue/pid/master.pid")"
"$PY" "$ROOT/tests/e2e/e2e.py" wait-port "$SMTP_PORT" --timeout 30 ||
    die "Postfix does not listen on 127.0.0.1:$SMTP_PORT"

# ------------------------------------------------------------------------------------------
# 4. rsyslog: a private instance tailing Postfix's log into the shipped omkafka ruleset.
mkdir -p "$WORK/rsyslog"
sed -e "s|^\( *broker=\)\[[^]]*\]|\1[\"$BROKERS\"]|" \
    -e "s|^\( *topic=\)\"[^\"]*\"|\1\"$INPUT_TOPIC\"|" \
    deploy/rsyslog/stormwatch-omkafka.conf >"$WORK/rsyslog/stormwatch-omkafka.conf"
if ! grep -q "broker=\[\"$BROKERS\"\]" "$WORK/rsyslog/stormwatch-omkafka.conf" ||
    ! grep -q "topic=\"$INPUT_TOPIC\"" "$WORK/rsyslog/stormwatch-omkafka.conf"; then
    die "cannot point deploy/rsyslog/stormwatch-omkafka.conf at $BROKERS / $INPUT_TOPIC"
fi
cat >"$WORK/rsyslog/rsyslog.conf" <<EOF
# written by tests/e2e/postfix/run.sh: no system inputs (no /dev/log), only Postfix's log file
global(workDirectory="$WORK/rsyslog")
module(load="imfile" mode="inotify")
include(file="$WORK/rsyslog/stormwatch-omkafka.conf")
input(type="imfile" file="$PFX/log/maillog" tag="postfix" ruleset="stormwatch_kafka"
      freshStartTail="off")
EOF
rsyslogd -N1 -f "$WORK/rsyslog/rsyslog.conf" >"$WORK/rsyslog-check.log" 2>&1 ||
    { cat "$WORK/rsyslog-check.log"; die "rsyslogd -N1 rejects the configuration"; }
start rsyslog rsyslogd -n -f "$WORK/rsyslog/rsyslog.conf" -i "$WORK/rsyslog/rsyslogd.pid"

# ------------------------------------------------------------------------------------------
# 5. stormwatch.
PF stormwatch-config "$WORK/stormwatch.toml" --brokers "$BROKERS" --topic "$INPUT_TOPIC" \
    --alerts-topic "$ALERTS_TOPIC" --dlq-topic "$DLQ_TOPIC" --listen "$SW_ADDR"
"$SW" run --config "$WORK/stormwatch.toml" --print-config >"$WORK/stormwatch-effective.toml" 2>&1 ||
    { cat "$WORK/stormwatch-effective.toml"; die "stormwatch rejects the configuration (input.format = \"postfix\")"; }
start stormwatch env STORMWATCH_LOG=info "$SW" run --config "$WORK/stormwatch.toml"
SW_PID=${PIDS[-1]}
"$PY" "$ROOT/tests/e2e/e2e.py" wait-http "http://$SW_ADDR/readyz" --timeout 60 ||
    die "stormwatch /readyz did not answer 200 within 60 s"
say "stormwatch is ready"

# ------------------------------------------------------------------------------------------
# 6. The mail: an original to the list, five reply-alls, over SMTP.
say "sending over SMTP to 127.0.0.1:$SMTP_PORT"
in_step PF send "127.0.0.1:$SMTP_PORT" --to "$LIST" --domain nhs.test --out "$WORK/sent.json" \
    >"$WORK/send.log" 2>&1 || { cat "$WORK/send.log"; die "sending the mail failed"; }
sed 's/^/  /' "$WORK/send.log"

# ------------------------------------------------------------------------------------------
# 7. Checks, hop by hop.
check "hop 1: Postfix logged every message (message-id, nrcpt=$LIST_SIZE, header INFO lines)" \
    PF check-maillog "$PFX/log/maillog" --sent "$WORK/sent.json" --timeout 60
check "hop 2: rsyslog (omkafka) shipped those lines, as written, to $INPUT_TOPIC" \
    PF check-input "$BROKERS" "$INPUT_TOPIC" --sent "$WORK/sent.json" \
    --maillog "$PFX/log/maillog" --save "$WORK/shipped.log" --timeout 90
check "hop 3: stormwatch announced the storm on $ALERTS_TOPIC (thread key, rule early, counts)" \
    PF check-storm "$BROKERS" "$ALERTS_TOPIC" --sent "$WORK/sent.json" \
    --save "$WORK/alerts-topic.jsonl" --timeout 60
check "every reply joined the thread: /api/v1/storms counts all of them, 3,000 recipients each" \
    PF check-board "http://$SW_ADDR/api/v1/storms" --sent "$WORK/sent.json" --timeout 30
if [ -s "$WORK/shipped.log" ] && "$SW" replay --format postfix "$WORK/shipped.log" \
    >"$WORK/replay-alerts.jsonl" 2>"$WORK/replay.log"; then
    check "stormwatch replay --format postfix of the shipped lines: the same storm" \
        PF check-replay --service "$WORK/alerts-topic.jsonl" --replay "$WORK/replay-alerts.jsonl"
else
    record FAIL "stormwatch replay --format postfix of the shipped lines ($(tail -n1 "$WORK/replay.log" 2>/dev/null))"
fi
say "stormwatch metrics: $(curl -fsS "http://$SW_ADDR/metrics" 2>/dev/null |
    grep -E '^stormwatch_(events|malformed|decode)[a-z_]*(\{[^}]*\})? ' | tr '\n' ' ' | cut -c1-600 || true)"

sigterm_check "SIGTERM stops stormwatch with exit 0 within 20 s" "$SW_PID"
