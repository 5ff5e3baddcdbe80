#!/bin/sh
# Install what ocimirror needs on Debian 12, from Debian's packages only.
#   install-deps.sh            build + everything the test suite uses
#   install-deps.sh --build    only what building and running needs
# Run as root.
set -eu
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" != 0 ]; then
    echo "install-deps.sh: run as root (it calls apt-get)" >&2
    exit 1
fi
BUILD_PKGS="build-essential cmake pkg-config ca-certificates
    libmicrohttpd-dev libcurl4-openssl-dev libssl-dev libsqlite3-dev libjansson-dev libfyaml-dev
    libsystemd-dev"
TEST_PKGS="python3 openssl curl iproute2 util-linux procps
    docker-registry skopeo podman containerd docker.io runc uidmap iptables umoci
    clang libclang-rt-14-dev chromium fonts-wqy-microhei"
PKGS="$BUILD_PKGS"
[ "${1:-}" = "--build" ] || PKGS="$PKGS $TEST_PKGS"
apt-get update
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $PKGS
if [ "${1:-}" != "--build" ]; then
    # The browser tests drive Debian's chromium with playwright-core (no
    # browser download).  Node.js 20+ is expected on the machine.
    if ! command -v node >/dev/null 2>&1; then
        apt-get install -y --no-install-recommends nodejs npm
    fi
    here=$(cd "$(dirname "$0")/.." && pwd)
    (cd "$here/tests/ui" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi
