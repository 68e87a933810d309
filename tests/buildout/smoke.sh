#!/usr/bin/env bash
# Smoke test of the buildout deployment (buildout.cfg, docs/buildout.md).
#
#   bash tests/buildout/smoke.sh
#
# Builds buildout.cfg as a user would, in a copy of the deployment's files
# (build/buildout/site: the checkout itself is left alone), with free
# loopback ports; starts the ZEO server, the web instance and the worker;
# queues one engine job through the instance and waits until the worker ran
# it; makes a Plone site with zasync and queues a real Plone job in it as a
# user who is only a Member (a Contributor of one folder), and checks that
# the worker ran it as that user: the document it created is theirs and in
# the catalog, with its workflow state (tests/buildout/smoke_job.py); stops
# the worker (its dispatcher must leave the queue), the instance and
# the ZEO server. Then the same again in multi-database mode
# (tests/buildout/multi_db.cfg), on a new database. Exits non-zero on the
# first failure. Every wait is bounded; every process it started is stopped
# on exit, also after a failure.
#
# Needs python3.11 and PyPI, nothing else: no virtual env of the checkout.
# The commands are the ones docs/buildout.md shows, plus ports and cache.
# Environment:
#   ZASYNC_BUILDOUT_WORK   where to build (default: build/buildout)
#   ZASYNC_BUILDOUT_CACHE  buildout's eggs and downloads, kept across runs
#                          (default: ~/.cache/zasync/buildout; empty: none,
#                          everything is fetched and installed afresh)
set -euo pipefail
exec </dev/null

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${ZASYNC_BUILDOUT_WORK:-$REPO/build/buildout}
CACHE=${ZASYNC_BUILDOUT_CACHE-${XDG_CACHE_HOME:-$HOME/.cache}/zasync/buildout}
SITE=$WORK/site

# Bounds, in seconds.
PIP_TIMEOUT=600
BUILDOUT_TIMEOUT=1500
START_TIMEOUT=120  # one `bin/... start`
READY_TIMEOUT=300  # until the instance and the worker answer HTTP
RUN_TIMEOUT=180    # one `bin/instance run`
SITE_TIMEOUT=420   # the `bin/instance run` that makes a Plone site
STOP_TIMEOUT=90    # one `bin/... stop`

export PYTHONUNBUFFERED=1 PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_PROGRESS_BAR=off

START=$SECONDS
LAST=$SECONDS
CURRENT=""
TIMINGS=()
step() {
    if [ -n "$CURRENT" ]; then TIMINGS+=("$((SECONDS - LAST))s  $CURRENT"); fi
    LAST=$SECONDS
    CURRENT=$*
    echo
    echo "=== [$((SECONDS - START))s] $*"
}

fail() {
    echo "smoke: FAILED: $*" >&2
    exit 1
}

# Process groups of the daemons started (zdaemon makes each its own session:
# the supervisor's pid is the group id), so that cleanup ends exactly them.
PGIDS=()
record_pgid() {
    local part=$1 status pid pgid
    status=$(timeout 30 "bin/$part" status 2>&1 || true)
    pid=$(sed -n 's/.*pid=\([0-9][0-9]*\).*/\1/p' <<<"$status" | head -n1)
    [ -n "$pid" ] || fail "bin/$part status shows no pid after start: $status"
    pgid=$(ps -o pgid= -p "$pid" | tr -d ' ')
    [ -n "$pgid" ] || fail "bin/$part: process $pid is gone"
    echo "$part: process $pid, process group $pgid"
    PGIDS+=("$pgid")
    PID=$pid
}

alive() {
    kill -0 -- "-$1" 2>/dev/null
}

show_logs() {
    local log
    for log in "$SITE"/var/log/*.log; do
        [ -f "$log" ] && [[ $log != *-access.log ]] || continue
        echo "----- last lines of ${log#"$SITE"/}"
        tail -n 40 "$log"
    done
}

cleanup() {
    local rc=$? part pgid
    set +e
    if [ -d "$SITE/bin" ]; then
        cd "$SITE"
        for part in worker instance zeoserver; do
            if [ -x "bin/$part" ] &&
                timeout 30 "bin/$part" status 2>/dev/null | grep -q 'pid='; then
                echo "smoke: stopping $part" >&2
                timeout "$STOP_TIMEOUT" "bin/$part" stop >/dev/null 2>&1
            fi
        done
        for pgid in "${PGIDS[@]}"; do
            for _ in $(seq 50); do alive "$pgid" || break; sleep 0.2; done
            alive "$pgid" || continue
            echo "smoke: process group $pgid still runs: SIGTERM" >&2
            kill -TERM -- "-$pgid" 2>/dev/null
            for _ in $(seq 50); do alive "$pgid" || break; sleep 0.2; done
            if alive "$pgid"; then
                echo "smoke: process group $pgid still runs: SIGKILL" >&2
                kill -KILL -- "-$pgid" 2>/dev/null
            fi
        done
    fi
    if [ $rc -ne 0 ]; then
        show_logs
        echo
        echo "=== buildout smoke test FAILED (exit $rc) after $((SECONDS - START))s," \
            "during: $CURRENT"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_ports() {
    python3.11 - "$1" <<'EOF'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
EOF
}

# Until every URL answers HTTP, whatever the status; at most $1 seconds.
wait_http() {
    venv/bin/python - "$@" <<'EOF'
import sys, time, urllib.error, urllib.request
seconds, urls = float(sys.argv[1]), sys.argv[2:]
deadline = time.monotonic() + seconds
for url in urls:
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            break
        except urllib.error.HTTPError:
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                sys.exit(f"{url} does not answer after {seconds:.0f}s: {exc}")
            time.sleep(0.5)
    print(f"{url} answers")
EOF
}

step "environment"
command -v python3.11 >/dev/null || fail "python3.11 not found"
echo "python:    $(command -v python3.11) ($(python3.11 --version 2>&1))"
echo "checkout:  $REPO"
echo "site:      $SITE"
echo "cache:     ${CACHE:-none}"
read -r ZEO_PORT INSTANCE_PORT WORKER_PORT <<<"$(free_ports 3)"
echo "ports:     ZEO $ZEO_PORT, instance $INSTANCE_PORT, worker $WORKER_PORT"

step "copy the deployment's files to $SITE"
rm -rf "$SITE"
mkdir -p "$SITE"
(cd "$REPO" && tar -cf - --exclude=__pycache__ --exclude='*.egg-info' \
    buildout.cfg pyproject.toml README.rst requirements src tests/buildout) |
    tar -xf - -C "$SITE"
cd "$SITE"

step "buildout's versions match the lock"
python3.11 requirements/buildout_versions.py --check

step "virtual env with zc.buildout from the lock"
python3.11 -m venv venv
timeout "$PIP_TIMEOUT" venv/bin/pip install -c requirements/constraints.txt zc.buildout
venv/bin/buildout --version

overrides=(
    "zeoserver:zeo-address=127.0.0.1:$ZEO_PORT"
    "instance:http-address=127.0.0.1:$INSTANCE_PORT"
    "worker:http-address=127.0.0.1:$WORKER_PORT"
)
if [ -n "$CACHE" ]; then
    mkdir -p "$CACHE/eggs" "$CACHE/downloads"
    overrides+=(
        "buildout:eggs-directory=$CACHE/eggs"
        "buildout:download-cache=$CACHE/downloads"
    )
fi

# Runs buildout (its arguments first, then the ports and the cache) into a
# log of its own; fails with the log's end.
build() {
    local log=$1
    shift
    if ! timeout "$BUILDOUT_TIMEOUT" "$@" "${overrides[@]}" >"$log" 2>&1; then
        tail -n 60 "$log"
        fail "buildout failed or took more than ${BUILDOUT_TIMEOUT}s (log above)"
    fi
    grep -c '^Got ' "$log" | sed 's/$/ distributions downloaded/' || true
    grep -E '^(Installing|Updating|Develop:|Generated script)' "$log" || true
    for script in zeoserver instance worker; do
        [ -x "bin/$script" ] || fail "buildout made no bin/$script"
    done
}

# Starts the cluster on an empty database, runs one job, stops the cluster.
# $1: where the queues are, as the instance's and the worker's logs say it.
run_cluster() {
    local queues=$1 current
    step "start the ZEO server"
    timeout "$START_TIMEOUT" bin/zeoserver start
    record_pgid zeoserver

    # The instance first: two Zope processes that find the database empty
    # both create its root objects, and one of them fails with a
    # ConflictError (zdaemon restarts it, but the smoke test wants none).
    step "start the instance"
    timeout "$START_TIMEOUT" bin/instance start
    record_pgid instance
    wait_http "$READY_TIMEOUT" "http://127.0.0.1:$INSTANCE_PORT/"
    grep -F "zasync: role instance, queues in $queues; this process runs no" \
        var/log/instance.log ||
        fail "the instance did not log its zasync role with queues in $queues"

    step "start the worker"
    timeout "$START_TIMEOUT" bin/worker start
    record_pgid worker
    local worker_pid=$PID
    wait_http "$READY_TIMEOUT" "http://127.0.0.1:$WORKER_PORT/"
    grep -E "zasync: started dispatcher .*role worker.*queues in $queues" \
        var/log/worker.log ||
        fail "the worker started no dispatcher with queues in $queues"
    if grep -F "zasync: started dispatcher" var/log/instance.log; then
        fail "the instance runs a dispatcher: it must only queue"
    fi

    step "queue a job through the instance"
    timeout "$RUN_TIMEOUT" bin/instance run tests/buildout/smoke_job.py queue

    step "the worker runs it"
    # Waits at most 120 s for the job to complete.
    timeout "$RUN_TIMEOUT" \
        bin/instance run tests/buildout/smoke_job.py wait var/worker.uuid 120

    step "queue a Plone job as a Member, through the instance"
    local output plone_job
    output=$(timeout "$SITE_TIMEOUT" \
        bin/instance run tests/buildout/smoke_job.py plone-queue)
    echo "$output"
    plone_job=$(sed -n 's/^queued Plone job \([0-9][0-9]*\) .*/\1/p' <<<"$output")
    [ -n "$plone_job" ] || fail "smoke_job.py plone-queue printed no job id"

    step "the worker runs the Plone job as the Member; the catalog has its document"
    # Waits at most 120 s for the job to complete.
    timeout "$RUN_TIMEOUT" bin/instance run tests/buildout/smoke_job.py plone-wait 120
    grep -F "job $plone_job (zasync.plone.demo.jobs.create_documents) succeeded" \
        var/log/worker.log ||
        fail "the worker's log does not say that it ran the Plone job $plone_job"
    if grep -F "job $plone_job " var/log/instance.log; then
        fail "the instance ran the Plone job $plone_job: only the worker may"
    fi
    current=$(timeout 30 bin/worker status 2>&1 || true)
    if [[ $current != *"pid=$worker_pid"* ]]; then
        fail "the worker (process $worker_pid) restarted or stopped: $current"
    fi

    step "stop the worker: its dispatcher leaves the queue"
    timeout "$STOP_TIMEOUT" bin/worker stop
    timeout "$RUN_TIMEOUT" \
        bin/instance run tests/buildout/smoke_job.py stopped var/worker.uuid 60

    step "stop the instance and the ZEO server"
    timeout "$STOP_TIMEOUT" bin/instance stop
    timeout "$STOP_TIMEOUT" bin/zeoserver stop
    for pgid in "${PGIDS[@]}"; do
        for _ in $(seq 50); do alive "$pgid" || break; sleep 0.2; done
        if alive "$pgid"; then fail "process group $pgid runs after stop"; fi
    done
}

step "buildout: buildout.cfg (log: $SITE/buildout.log)"
build buildout.log venv/bin/buildout
run_cluster "the main database"

step "buildout: multi-database mode, tests/buildout/multi_db.cfg" \
    "(log: $SITE/buildout-multi-db.log)"
mv var var-single-db  # an empty database again
build buildout-multi-db.log \
    venv/bin/buildout -c tests/buildout/multi_db.cfg buildout:directory="$PWD"
run_cluster "database 'zasync_queues'"

step "done"
echo "timings:"
printf '  %s\n' "${TIMINGS[@]}"
echo "=== buildout smoke test passed in $((SECONDS - START))s"
