#!/bin/sh
# Install what ocimirror needs on Debian 12, from Debian's packages; for the
# browser tests also playwright-core and, if the machine has no Node.js 20+,
# a pinned Node.js and npm, from the npm registry.
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
    libexpat1-dev
    libsystemd-dev libhiredis-dev libcrypt-dev"
TEST_PKGS="python3 openssl curl iproute2 util-linux procps haproxy
    apache2-utils docker-registry skopeo podman containerd docker.io runc uidmap iptables umoci
    clang libclang-rt-14-dev chromium fonts-wqy-microhei redis-server
    ceph-mon ceph-osd radosgw"
PKGS="$BUILD_PKGS"
[ "${1:-}" = "--build" ] || PKGS="$PKGS $TEST_PKGS"
apt-get update
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $PKGS
if [ "${1:-}" != "--build" ]; then
    # The browser tests drive Debian's chromium with playwright-core (no
    # browser download), which needs Node.js 20 or newer; Debian 12's nodejs
    # is 18.  Without a node >= 20 and npm on the machine, put a pinned
    # Node.js (the official build, as the npm registry's node-linux-<arch>
    # package carries it) and npm into $NODE_DIR, checked against the
    # SHA-512 below; ctest's ui.browser puts $NODE_DIR/bin first on PATH.
    NODE_DIR=/opt/ocimirror-node
    NODE_VERSION=20.20.2 NPM_VERSION=11.19.1
    NPM_SHA512=cedb312b1b7f92421a02cfb68b4194e88f8346651dacd6acc5364a25ef5309d4a32b19616a1ff8aff865e7280c0fa5c0835a99f5cd93368991e2a80ec9da75d2
    node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
    if [ -x "$NODE_DIR/bin/node" ] || ! command -v npm >/dev/null 2>&1 || [ "$(node_major node)" -lt 20 ]; then
        if [ "$("$NODE_DIR/bin/node" --version 2>/dev/null)" != "v$NODE_VERSION" ] ||
           [ "$(PATH="$NODE_DIR/bin:$PATH" npm --version 2>/dev/null)" != "$NPM_VERSION" ]; then
            case $(dpkg --print-architecture) in
                amd64) arch=x64 sha512=3de1d033cc007661ed640d66068732819c6ce4b8945adb097b3413901774898f7cecaa46ac3d4edad544c9dbcc662b9771e45a9f1b7bae34e70c407038fba3a1 ;;
                arm64) arch=arm64 sha512=2c25c99cd4c58b21ae601c36819488e4e04531b92300fb7cb2a0ff34aad6a04d90983812b9b4ea16783a19a349f4427c1e9c413067165a96db72ce15a3e0a71a ;;
                *) echo "install-deps.sh: no pinned Node.js for $(dpkg --print-architecture): install Node.js 20+ and npm, then rerun" >&2
                   exit 1 ;;
            esac
            registry=${NPM_CONFIG_REGISTRY:-https://registry.npmjs.org}
            tmp=$(mktemp -d)
            trap 'rm -rf "$tmp"' EXIT
            echo "install-deps.sh: Node.js $NODE_VERSION and npm $NPM_VERSION from ${registry%/} into $NODE_DIR"
            curl -fsSL --retry 3 -o "$tmp/node.tgz" "${registry%/}/node-linux-$arch/-/node-linux-$arch-$NODE_VERSION.tgz"
            curl -fsSL --retry 3 -o "$tmp/npm.tgz" "${registry%/}/npm/-/npm-$NPM_VERSION.tgz"
            printf '%s  %s\n' "$sha512" "$tmp/node.tgz" "$NPM_SHA512" "$tmp/npm.tgz" | sha512sum -c --quiet -
            mkdir -p "$tmp/new/lib/node_modules/npm"
            tar -xzf "$tmp/node.tgz" -C "$tmp/new" --strip-components=1 --no-same-owner package/bin package/LICENSE
            tar -xzf "$tmp/npm.tgz" -C "$tmp/new/lib/node_modules/npm" --strip-components=1 --no-same-owner
            ln -s ../lib/node_modules/npm/bin/npm-cli.js "$tmp/new/bin/npm"
            ln -s ../lib/node_modules/npm/bin/npx-cli.js "$tmp/new/bin/npx"
            rm -rf "$NODE_DIR"
            mkdir -p "$(dirname "$NODE_DIR")"
            mv "$tmp/new" "$NODE_DIR"
        fi
        PATH=$NODE_DIR/bin:$PATH
    fi
    echo "install-deps.sh: the browser tests use $(command -v node) $(node --version), npm $(npm --version)"
    here=$(cd "$(dirname "$0")/.." && pwd)
    (cd "$here/tests/ui" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi
