#!/usr/bin/env bash
# Usage: docker/engine.sh COMMAND [ARG...]
#
# Runs COMMAND with DOCKER_HOST naming a Docker engine that answers: the one DOCKER_HOST (or the
# default socket) offers, or else a private dockerd started here, its state under .docker/ in
# the repository, and stopped by its PID when COMMAND ends, fails or is interrupted. A private
# engine runs without a default bridge and without touching iptables (so it needs no more
# than root), which is why builds and containers use user-defined or host networks.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=$root/.docker

answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if answers; then
    echo "engine.sh: using the engine at ${DOCKER_HOST:-the default socket}" >&2
    exec "$@"
fi
command -v dockerd >/dev/null || { echo "engine.sh: no engine answers and no dockerd: run 'make docker-tools'" >&2; exit 1; }

# A unix socket's path has at most 107 bytes; containerd's, under exec-root, is the longest.
mkdir -p "$state"
run=$state
if (( ${#run} > 60 )); then run=$(mktemp -d /tmp/ethbridge-docker.XXXXXX); fi
export DOCKER_HOST=unix://$run/engine.sock

setsid dockerd --iptables=false --bridge=none --storage-driver=overlay2 \
    --data-root "$state/data" --exec-root "$run/exec" \
    -H "$DOCKER_HOST" --pidfile "$run/dockerd.pid" >"$state/dockerd.log" 2>&1 &
pid=$!

stop() {
    # dockerd stops its containers and its containerd before it exits.
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "engine.sh: dockerd $pid still running after 60 s: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    # dockerd leaves its default network namespace mounted in exec-root; nothing else uses it.
    awk -v dir="$run/exec/" 'index($2, dir) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount
    rm -rf "$run/exec"
    if [[ $run != "$state" ]]; then rm -rf "$run"; fi
    echo "engine.sh: stopped dockerd $pid" >&2
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for _ in $(seq 60); do
    answers && break
    kill -0 "$pid" 2>/dev/null || { echo "engine.sh: dockerd exited: see $state/dockerd.log" >&2; exit 1; }
    sleep 0.5
done
answers || { echo "engine.sh: dockerd does not answer: see $state/dockerd.log" >&2; exit 1; }
echo "engine.sh: started dockerd $pid at $DOCKER_HOST" >&2

# Ctrl-C reaches COMMAND (pytest then cleans up), not the engine, which has a session of its
# own; the traps above run once COMMAND has finished, and stop the engine.
"$@"
