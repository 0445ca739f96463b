# shellcheck shell=bash
# The process and result harness shared by tests/e2e/run.sh and tests/e2e/postfix/run.sh:
# every process started is recorded (pid, name) and stopped by PID on exit, also on failure;
# checks record PASS/FAIL and never stop the run; the summary says what passed and failed.
#
# The sourcing script sets, before sourcing:
#   SUITE         the name in the summary ("e2e", "postfix e2e")
#   STEP_KEYWORD  `in_step KEYWORD args...` runs "$PY" "$STEP_SCRIPT" args...
#   STEP_SCRIPT   the Python helper of the suite
#   T0, say()     the start time and the log function
# and may define `before_summary` (runs after every process is stopped) and `summary_extra`
# (prints extra summary lines). EXTRA_LOGS names logs under $WORK shown on failure besides the
# processes' own.

PIDS=()
NAMES=()
RESULTS=()
FAILED=0
PASSED=0
WORK=""
[ -n "${EXTRA_LOGS+x}" ] || EXTRA_LOGS=()

start() { # start NAME CMD...: runs CMD in the background, output to $WORK/NAME.log
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
    NAMES+=("$name")
    say "started $name (pid $!)"
}

adopt() { # adopt NAME PID: a process that daemonized itself (Postfix's master)
    PIDS+=("$2")
    NAMES+=("$1")
    say "$1 runs as pid $2"
}

# A long foreground step runs in the background and is waited for, so that SIGTERM/SIGINT stop
# the script at once (bash runs traps only between commands, but during `wait`); the step's
# PID is stopped with the rest.
CURRENT=""
in_step() { # in_step CMD...: runs CMD ($STEP_KEYWORD ... for the helper) and returns its status
    if [ "$1" = "$STEP_KEYWORD" ]; then
        shift
        set -- "$PY" "$STEP_SCRIPT" "$@"
    fi
    "$@" &
    CURRENT=$!
    local rc=0
    wait "$CURRENT" || rc=$?
    CURRENT=""
    return "$rc"
}

stop_all() {
    local i pid
    if [ -n "$CURRENT" ] && kill -0 "$CURRENT" 2>/dev/null; then
        kill -TERM "$CURRENT" 2>/dev/null || true
        wait "$CURRENT" 2>/dev/null || true
    fi
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "${NAMES[i]} (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
}

record() { # record PASS|FAIL NAME
    RESULTS+=("$1  $2")
    if [ "$1" = PASS ]; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); fi
    say "$1: $2"
}

check() { # check NAME CMD...: runs a check, records its outcome, never stops the run
    local name=$1
    shift
    say "check: $name"
    if in_step "$@"; then record PASS "$name"; else record FAIL "$name"; fi
}

sigterm_check() { # sigterm_check NAME PID: SIGTERM, then exit 0 within 20 s
    local name=$1 pid=$2 rc=""
    say "check: $name"
    kill -TERM "$pid"
    for _ in $(seq 1 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            set +e
            wait "$pid"
            rc=$?
            set -e
            break
        fi
        sleep 0.2
    done
    if [ "$rc" = 0 ]; then
        record PASS "$name"
    elif [ -z "$rc" ]; then
        record FAIL "$name (still running after 20 s)"
    else
        record FAIL "$name (exit $rc)"
    fi
}

show_logs() {
    local name
    [ -n "$WORK" ] || return 0
    for name in "${NAMES[@]}" "${EXTRA_LOGS[@]}"; do
        if [ -s "$WORK/$name.log" ]; then
            echo "---- last lines of $name.log ----"
            tail -n 25 "$WORK/$name.log" | cut -c1-400
        fi
    done
}

SETUP_ERROR=""
die() {
    SETUP_ERROR="$*"
    say "setup failed: $*"
    exit 1
}

finish() {
    local rc=$?
    trap - EXIT
    exec 1>&3 2>&4
    stop_all
    if declare -F before_summary >/dev/null; then before_summary; fi
    echo
    echo "==================== $SUITE summary ===================="
    local r
    for r in "${RESULTS[@]}"; do echo "  $r"; done
    if [ -n "$SETUP_ERROR" ]; then
        echo "  FAIL  setup: $SETUP_ERROR"
        FAILED=$((FAILED + 1))
    elif [ "$rc" -ne 0 ] && [ "$FAILED" -eq 0 ]; then
        echo "  FAIL  the script stopped early (exit $rc)"
        FAILED=$((FAILED + 1))
    fi
    if declare -F summary_extra >/dev/null; then summary_extra; fi
    echo "  time: $(($(date +%s) - T0)) s"
    if [ "$FAILED" -ne 0 ]; then
        show_logs
        echo "$SUITE: FAIL"
        echo "$SUITE: $PASSED passed, $FAILED failed"
        [ -n "$WORK" ] && echo "(logs and data kept in $WORK)"
        exit 1
    fi
    echo "$SUITE: PASS"
    echo "$SUITE: $PASSED passed, 0 failed"
    if [ -n "$WORK" ]; then
        if [ "${E2E_KEEP:-0}" = 1 ]; then echo "(logs and data kept in $WORK)"; else rm -rf "$WORK"; fi
    fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
