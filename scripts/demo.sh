#!/usr/bin/env bash
# The demo: a private Prosody, the component with its demo meters, and a client that shows what
# it sees: the discovery tree, then the meters' readings arriving live.
#
#   scripts/demo.sh           build, start everything, print the discovery tree, then one line per
#                             live reading (XEP-0060 notifications, every 2 s per meter) until Ctrl-C
#   scripts/demo.sh --once    the same, but exit after printing the tree
#   scripts/demo.sh --live-for SECONDS   watch the live readings that long, then exit
#   RELEASE=1 scripts/demo.sh use a release build (slow to build on a small machine)
#   KEEP=1 scripts/demo.sh    keep the temporary directory (configs, logs) on exit
#   QUOALISE_BIN=path scripts/demo.sh   use that binary instead of building one
#
# Everything runs on 127.0.0.1 on free ports, in a temporary directory removed on exit:
# Prosody (run as the `prosody` user, VirtualHost localhost, account demo@localhost, a component
# listener for quoalise.localhost with a generated secret), the component (demo source, SQLite
# store in the temporary directory, a grant for demo@localhost) and scripts/watch.py (slixmpp).
# Installs Prosody (Debian package) and the Python client packages (.venv/) when missing.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

WATCH_ARGS=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --once) WATCH_ARGS+=(--once) ;;
        --live-for)
            [ "$#" -ge 2 ] || die "--live-for needs a number of seconds"
            [[ "$2" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--live-for: not a number of seconds: $2"
            WATCH_ARGS+=(--live-for "$2")
            shift
            ;;
        -h | --help)
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
            exit 0
            ;;
        *) die "unknown argument: $1 (try --help)" ;;
    esac
    shift
done

[ "$(id -u)" -eq 0 ] || die "run as root: Prosody is started as the prosody user through runuser"

ensure_apt_packages prosody lua-event
ensure_venv

if [ -n "${QUOALISE_BIN:-}" ]; then
    BINARY="$QUOALISE_BIN"
    [ -x "$BINARY" ] || die "QUOALISE_BIN=$BINARY is not an executable"
elif [ "${RELEASE:-}" = 1 ]; then
    log "cargo build --release"
    cargo build --release
    BINARY="$REPO_ROOT/target/release/quoalise-component"
else
    log "cargo build (set RELEASE=1 for a release build)"
    cargo build
    BINARY="$REPO_ROOT/target/debug/quoalise-component"
fi

WORK="$(mktemp -d /tmp/quoalise-demo.XXXXXX)"
chmod 755 "$WORK"
PROSODY_PGID=
COMPONENT_PGID=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    echo
    [ -n "$COMPONENT_PGID" ] && { log "stopping the component"; stop_group "$COMPONENT_PGID" 15; }
    [ -n "$PROSODY_PGID" ] && { log "stopping Prosody"; stop_group "$PROSODY_PGID" 10; }
    if [ "${KEEP:-}" = 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- Prosody ---------------------------------------------------------------------------------
C2S_PORT="$(free_port)"
COMPONENT_PORT="$(free_port)"
while [ "$COMPONENT_PORT" = "$C2S_PORT" ]; do COMPONENT_PORT="$(free_port)"; done
SECRET="$(random_hex 16)"
PASSWORD="$(random_hex 8)"
DOMAIN=quoalise.localhost
PDIR="$WORK/prosody"
mkdir -p "$PDIR/data" "$PDIR/certs"
sed -e "s|@DIR@|$PDIR|g" \
    -e "s|@C2S_PORT@|$C2S_PORT|g" \
    -e "s|@COMPONENT_PORT@|$COMPONENT_PORT|g" \
    -e "s|@COMPONENT_DOMAIN@|$DOMAIN|g" \
    -e "s|@COMPONENT_SECRET@|$SECRET|g" \
    prosody/test.cfg.lua.in >"$PDIR/prosody.cfg.lua"
chown -R prosody:prosody "$PDIR"

log "creating demo@localhost"
runuser -u prosody -- env HOME="$PDIR" \
    prosodyctl --config "$PDIR/prosody.cfg.lua" register demo localhost "$PASSWORD" </dev/null

log "starting Prosody on 127.0.0.1:$C2S_PORT (component port $COMPONENT_PORT)"
setsid runuser -u prosody -- env HOME="$PDIR" \
    prosody --config "$PDIR/prosody.cfg.lua" -F </dev/null >"$PDIR/stdout.log" 2>&1 &
PROSODY_PGID=$!
if ! wait_for_port "$C2S_PORT" 20 || ! wait_for_port "$COMPONENT_PORT" 5; then
    tail -n 30 "$PDIR/prosody.log" "$PDIR/stdout.log" >&2 || true
    die "Prosody did not start"
fi

# --- the component ---------------------------------------------------------------------------
CDIR="$WORK/component"
mkdir -p "$CDIR"
WEB_PORT="$(free_port)"
cat >"$CDIR/component.toml" <<EOF
# Written by scripts/demo.sh
[xmpp]
domain = "$DOMAIN"
server = "127.0.0.1:$COMPONENT_PORT"
secret = "$SECRET"
reconnect_max_delay = "5s"

[store]
url = "sqlite://$CDIR/quoalise.db"

[web]
bind = "127.0.0.1:$WEB_PORT"
public_url = "http://127.0.0.1:$WEB_PORT"

[access]
admins = []

[[access.grant]]
jid = "demo@localhost"
usage_points = ["*"]
purpose = "demonstration"

[[source]]
type = "demo"
id = "demo"
meters = 3
live_interval = "2s"
title = "Demo meters"
description = "Simulated Linky-like electricity meters"

[log]
level = "info"
EOF

log "starting the component ($BINARY)"
setsid env NO_COLOR=1 "$BINARY" run --config "$CDIR/component.toml" </dev/null >"$CDIR/component.log" 2>&1 &
COMPONENT_PGID=$!
if ! wait_for_line "$CDIR/component.log" "xmpp session established" 30 "$COMPONENT_PGID"; then
    tail -n 40 "$CDIR/component.log" >&2 || true
    die "the component did not connect to Prosody (log above)"
fi
log "component connected; its log: $CDIR/component.log"

# --- the client ------------------------------------------------------------------------------
log "what demo@localhost sees"
"$VENV/bin/python" scripts/watch.py \
    --jid demo@localhost --password "$PASSWORD" \
    --host 127.0.0.1 --port "$C2S_PORT" --component "$DOMAIN" "${WATCH_ARGS[@]}"
