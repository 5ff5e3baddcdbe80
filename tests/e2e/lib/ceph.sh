#!/usr/bin/env bash
# ceph.sh — a throwaway single-node Ceph (Debian 12's Pacific 16.2: mon + OSD +
# RADOS Gateway) on 127.0.0.1, for the S3 tests (tests/e2e/lib/ceph.py drives it).
#
#   CEPH_DIR=DIR MON_PORT=P RGW_PORT=P OSD_PORT_MIN=P ceph.sh up    # writes DIR/s3.env
#   CEPH_DIR=DIR ceph.sh rgw-stop | rgw-start                      # the gateway only
#   CEPH_DIR=DIR ceph.sh down                                       # by PID, then rm -rf DIR
#
# Packages: ceph-mon ceph-osd radosgw (scripts/install-deps.sh TEST_PKGS).
# Every daemon runs in the foreground (-f) under setsid, its PID in
# DIR/run/NAME.pid; down kills exactly those PIDs (checked against their
# command line), never by name.  OSD_STORE=memstore (default) keeps the data in
# the OSD's RAM: up in ~2 s; bluestore uses a sparse file in DIR.  Auth between
# daemons is off (loopback only); S3 requests are SigV4-checked by radosgw
# against the user created here.
set -euo pipefail

CEPH_DIR=${CEPH_DIR:?CEPH_DIR must be set}
MON_PORT=${MON_PORT:-13300}
RGW_PORT=${RGW_PORT:-17480}
OSD_PORT_MIN=${OSD_PORT_MIN:-17000}
S3_ACCESS_KEY=${S3_ACCESS_KEY:-OMTESTACCESSKEY00001}
S3_SECRET_KEY=${S3_SECRET_KEY:-omtestsecretkey000000000000000000000001}
OSD_STORE=${OSD_STORE:-memstore}
MEMSTORE_BYTES=${MEMSTORE_BYTES:-4294967296}
UP_TIMEOUT=${UP_TIMEOUT:-120}
CONF="$CEPH_DIR/ceph.conf"

die() {
    echo "[ceph.sh] ERROR: $*" >&2
    for f in "$CEPH_DIR"/*.log "$CEPH_DIR"/*.stdout; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}

# start NAME CMD...: a detached foreground daemon, its PID recorded
start() {
    local name=$1
    shift
    setsid "$@" -f </dev/null >>"$CEPH_DIR/$name.stdout" 2>&1 &
    echo $! >"$CEPH_DIR/run/$name.pid"
}

# stop NAME [SIG]: signal the recorded PID if it is still our daemon (KILL by
# default: the data is thrown away anyway, and radosgw takes seconds to honour
# TERM), wait until it is gone
stop() {
    local f="$CEPH_DIR/run/$1.pid" p
    [ -s "$f" ] || return 0
    p=$(cat "$f")
    if [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' <"/proc/$p/cmdline" | grep -q -- "$CONF"; then
        kill "-${2:-KILL}" "$p" 2>/dev/null || true
        for _ in $(seq 1 20); do [ -d "/proc/$p" ] || break; sleep 0.1; done
    fi
    rm -f "$f"
}

cephcli() { timeout 30 ceph -c "$CONF" --connect-timeout 20 "$@"; }

wait_rgw() {
    local deadline=$(($(date +%s) + UP_TIMEOUT))
    until curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$RGW_PORT/"; do
        [ "$(date +%s)" -lt "$deadline" ] || die "radosgw not answering within ${UP_TIMEOUT}s"
        kill -0 "$(cat "$CEPH_DIR/run/client.rgw.pid")" 2>/dev/null || die "radosgw exited"
        sleep 0.2
    done
}

up() {
    for b in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph curl; do
        command -v "$b" >/dev/null || die "missing $b (apt-get install ceph-mon ceph-osd radosgw curl)"
    done
    [ -e "$CEPH_DIR/run" ] && die "$CEPH_DIR exists; run down first"
    mkdir -p "$CEPH_DIR"/{run,mon.a,osd.0,rgw,crash}
    local fsid
    fsid=$(cat /proc/sys/kernel/random/uuid)
    cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon initial members = a
mon host = v2:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
ms bind port min = $OSD_PORT_MIN
ms bind port max = $((OSD_PORT_MIN + 100))
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms client mode = crc
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
run dir = $CEPH_DIR/run
admin socket = $CEPH_DIR/run/\$name.asok
log file = $CEPH_DIR/\$name.log
pid file = $CEPH_DIR/run/\$name.daemon.pid
keyring = /dev/null
crash dir = $CEPH_DIR/crash
log to stderr = false
err to stderr = true

[mon]
mon data = $CEPH_DIR/mon.\$id
paxos propose interval = 0.05
paxos min wait = 0.01

[osd]
osd data = $CEPH_DIR/osd.\$id
osd objectstore = $OSD_STORE
memstore device bytes = $MEMSTORE_BYTES
bluestore block path = $CEPH_DIR/osd.\$id.block
bluestore block create = true
bluestore block size = 10737418240
osd memory target = 1073741824

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $CEPH_DIR/rgw
rgw thread pool size = 64
EOF
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$MON_PORT]" "$CEPH_DIR/monmap" >/dev/null
    ceph-mon -c "$CONF" --mkfs -i a --monmap "$CEPH_DIR/monmap" >/dev/null 2>&1 || die "ceph-mon --mkfs failed"
    start mon.a ceph-mon -c "$CONF" -i a
    local deadline=$(($(date +%s) + UP_TIMEOUT))
    until cephcli mon stat >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || die "mon not answering within ${UP_TIMEOUT}s"
        sleep 0.2
    done
    local uuid id
    uuid=$(cat /proc/sys/kernel/random/uuid)
    id=$(cephcli osd new "$uuid") || die "osd new failed"
    [ "$id" = 0 ] || die "unexpected osd id $id"
    ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" >"$CEPH_DIR/osd.0.mkfs.log" 2>&1 || die "ceph-osd --mkfs failed"
    start osd.0 ceph-osd -c "$CONF" -i 0
    until cephcli osd dump 2>/dev/null | grep -q '^osd.0 up'; do
        [ "$(date +%s)" -lt "$deadline" ] || die "osd.0 not up within ${UP_TIMEOUT}s"
        sleep 0.2
    done
    start client.rgw radosgw -c "$CONF" -n client.rgw
    wait_rgw
    timeout 60 radosgw-admin -c "$CONF" user create --uid=test --display-name="Test User" \
        --access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" >"$CEPH_DIR/user.json" \
        2>"$CEPH_DIR/radosgw-admin.log" || die "radosgw-admin user create failed"
    cat >"$CEPH_DIR/s3.env" <<EOF
S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
S3_REGION=us-east-1
S3_ACCESS_KEY=$S3_ACCESS_KEY
S3_SECRET_KEY=$S3_SECRET_KEY
EOF
}

down() {
    [ -d "$CEPH_DIR" ] || exit 0
    [ -f "$CONF" ] || [ -z "$(ls -A "$CEPH_DIR")" ] || die "$CEPH_DIR has no ceph.conf; not touching it"
    for n in client.rgw osd.0 mon.a; do stop "$n"; done
    rm -rf -- "$CEPH_DIR"
}

case "${1:-}" in
up) up ;;
down) down ;;
rgw-stop) stop client.rgw ;;
rgw-start) start client.rgw radosgw -c "$CONF" -n client.rgw; wait_rgw ;;
*) echo "usage: CEPH_DIR=DIR $0 up|down|rgw-stop|rgw-start" >&2; exit 2 ;;
esac
