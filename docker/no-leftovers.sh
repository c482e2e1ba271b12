#!/usr/bin/env bash
# Usage: docker/no-leftovers.sh PROJECT   (after docker/engine.sh has returned)
#
# Fails when something a compose run started outlived it: a process of the private engine
# (dockerd, its containerd and their shims name its folders on their command lines), or the
# compose project's containers, networks or volumes, in an engine that still answers (one that
# was there before) or in the private engine's state, which stays for its image cache.
set -euo pipefail

project=$1
state=$(cd "$(dirname "$0")/.." && pwd)/.docker
left=0

if pgrep -af -- "$state/|/tmp/ethbridge-docker\."; then
    echo "no-leftovers.sh: still running (above)" >&2
    left=1
fi
if grep -E -- " ($state/|/tmp/ethbridge-docker\.)" /proc/mounts; then
    echo "no-leftovers.sh: still mounted (above)" >&2
    left=1
fi
if timeout 10 docker version >/dev/null 2>&1; then
    for list in "ps -a" "network ls" "volume ls"; do
        # shellcheck disable=SC2086  # $list is two words
        found=$(docker $list -q --filter "label=com.docker.compose.project=$project")
        if [[ -n $found ]]; then
            echo "no-leftovers.sh: docker $list: $found" >&2
            left=1
        fi
    done
fi
if compgen -G "$state/data/containers/*" >/dev/null || compgen -G "$state/data/volumes/${project}_*" >/dev/null; then
    echo "no-leftovers.sh: containers or volumes remain in $state/data" >&2
    left=1
fi
if ((left == 0)); then echo "no-leftovers.sh: no process, container, network or volume of $project remains"; fi
exit $left
