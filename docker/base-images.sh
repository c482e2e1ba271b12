#!/usr/bin/env bash
# Usage: docker/base-images.sh   (with DOCKER_HOST naming the engine, see docker/engine.sh)
#
# Makes sure the images the Dockerfile and docker-compose.yml start FROM are in the engine:
# kept when present, pulled when a registry answers, and otherwise made here, under the very
# same tags, from what this machine has: Debian's packages (mmdebstrap) for Python, and the
# pinned binaries `make` installs for anvil/cast (node_modules) and CometBFT (.tools/bin).
# tests/test_compose.py checks that these tags are the ones the Dockerfile and compose use.
set -euo pipefail

PYTHON_IMAGE=python:3.11-slim-bookworm
FOUNDRY_IMAGE=ghcr.io/foundry-rs/foundry:v1.7.1
COMETBFT_IMAGE=cometbft/cometbft:v0.38.26

root=$(cd "$(dirname "$0")/.." && pwd)
work=$root/.docker/base
anvil=$root/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
cast=$root/node_modules/@foundry-rs/cast-linux-amd64/bin/cast
cometbft=$root/.tools/bin/cometbft

have() { docker image inspect "$1" >/dev/null 2>&1; }

# quietly COMMAND...: COMMAND's output goes to a log, shown only when it fails.
quietly() {
    "$@" >"$work/log" 2>&1 || { cat "$work/log" >&2; echo "base-images.sh: failed: $*" >&2; exit 1; }
}

# Debian bookworm's python3 (3.11) with venv and ca-certificates, `python` on PATH like the
# official image's. The host's own CA certificates (/usr/local/share/ca-certificates) go in,
# so that pip inside a build trusts what pip on this host trusts (e.g. a TLS-inspecting proxy).
make_python() {
    command -v mmdebstrap >/dev/null || { echo "base-images.sh: no mmdebstrap: run 'make docker-tools'" >&2; exit 1; }
    local tar=$work/python.tar hooks=()
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        # shellcheck disable=SC2016  # mmdebstrap expands $1 (the new root) in hooks
        hooks=(--customize-hook='copy-in /usr/local/share/ca-certificates /usr/local/share'
            --customize-hook='chroot "$1" update-ca-certificates >/dev/null')
    fi
    quietly mmdebstrap --variant=essential --include=python3,python3-venv,python-is-python3,ca-certificates,passwd \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        "${hooks[@]}" bookworm "$tar" http://deb.debian.org/debian
    # The suite is the pin (no snapshot archive is reachable here): the label records what came.
    local version
    version=$(tar -xOf "$tar" ./var/lib/dpkg/status | awk '/^Package: python3.11$/ {p = 1} p && /^Version:/ {print $2; exit}')
    docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
        --change "LABEL org.debian.python3.11=$version" "$tar" "$PYTHON_IMAGE" >/dev/null
    rm -f "$tar"
    docker run --rm --network none "$PYTHON_IMAGE" python -c 'import sys, ssl, sqlite3, venv; assert sys.version_info[:2] == (3, 11)'
}

# anvil and cast on PATH; the official image's entrypoint is `/bin/sh -c` (the compose file's
# anvil command is one string), kept here. Built on the Python image to share its layers.
make_foundry() {
    "$anvil" --version | grep -q "${FOUNDRY_IMAGE##*:v}" || { echo "base-images.sh: $anvil is not ${FOUNDRY_IMAGE##*:}: run 'make node-tools'" >&2; exit 1; }
    build_from "$FOUNDRY_IMAGE" "$anvil" "$cast" <<EOF
FROM $PYTHON_IMAGE
COPY anvil cast /usr/local/bin/
ENTRYPOINT ["/bin/sh", "-c"]
EOF
}

# The binary at the path of the official image (static, so nothing else is needed).
make_cometbft() {
    [[ "$("$cometbft" version)" == "${COMETBFT_IMAGE##*:v}" ]] || { echo "base-images.sh: $cometbft is not ${COMETBFT_IMAGE##*:}: run 'make cometbft'" >&2; exit 1; }
    build_from "$COMETBFT_IMAGE" "$cometbft" <<EOF
FROM scratch
COPY cometbft /usr/bin/cometbft
ENTRYPOINT ["/usr/bin/cometbft"]
EOF
}

# build_from TAG FILE... < Dockerfile: an image from a context holding only FILEs.
build_from() {
    local tag=$1 context=$work/context; shift
    rm -rf "$context" && mkdir -p "$context"
    cp "$@" "$context/"
    cat >"$context/Dockerfile"
    quietly docker build --tag "$tag" "$context"
    rm -rf "$context"
}

mkdir -p "$work"
for image in "$PYTHON_IMAGE" "$FOUNDRY_IMAGE" "$COMETBFT_IMAGE"; do
    if have "$image"; then
        echo "base-images.sh: $image is here"
    elif timeout 300 docker pull --quiet "$image" >/dev/null 2>&1; then
        echo "base-images.sh: $image pulled"
    else
        echo "base-images.sh: $image cannot be pulled: making it locally"
        case $image in
            "$PYTHON_IMAGE") make_python ;;
            "$FOUNDRY_IMAGE") make_foundry ;;
            "$COMETBFT_IMAGE") make_cometbft ;;
        esac
    fi
done
