# Shared helpers for scripts/*.sh. Source it; do not run it.
# shellcheck shell=bash

# The repository root, whatever the current directory.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"

log() {
    if [ -t 2 ]; then printf '\033[1m==> %s\033[0m\n' "$*" >&2; else printf '==> %s\n' "$*" >&2; fi
}
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# ensure_apt_packages PKG...: installs the Debian packages that are missing (as root).
# Package scripts are told not to start the system services (policy-rc.d): the tests and the
# demo run their own private instances.
ensure_apt_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]}: run as root, or apt-get install them"
    log "installing ${missing[*]}"
    local policy=/usr/sbin/policy-rc.d created_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    local rc=0
    {
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    } </dev/null || rc=$?
    [ -n "$created_policy" ] && rm -f "$policy"
    [ "$rc" -eq 0 ] || die "apt-get install ${missing[*]} failed"
}

# ensure_venv: .venv/ with the pinned packages of requirements-test.txt (reinstalled when it changes).
ensure_venv() {
    local req="$REPO_ROOT/requirements-test.txt" stamp="$VENV/.requirements.sha256" sum
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV"
        python3 -m venv "$VENV"
    fi
    sum="$(sha256sum "$req" | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
        log "installing Python test packages (requirements-test.txt)"
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$req" </dev/null
        echo "$sum" >"$stamp"
    fi
}

# free_port: prints a TCP port that is free on 127.0.0.1 right now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# random_hex N: N random bytes as hex.
random_hex() {
    python3 -c "import secrets; print(secrets.token_hex($1))"
}

# wait_for_port PORT SECONDS
wait_for_port() {
    local port="$1" deadline=$((SECONDS + $2))
    while [ "$SECONDS" -lt "$deadline" ]; do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

# wait_for_line FILE TEXT SECONDS [PID]: waits until TEXT appears in FILE (fails early if PID dies).
wait_for_line() {
    local file="$1" text="$2" deadline=$((SECONDS + $3)) pid="${4:-}"
    while [ "$SECONDS" -lt "$deadline" ]; do
        grep -qF -- "$text" "$file" 2>/dev/null && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.2
    done
    return 1
}

# stop_group PGID [SECONDS]: SIGTERM a process group, wait for it to go, then SIGKILL.
stop_group() {
    local pgid="$1" deadline=$((SECONDS + ${2:-10}))
    kill -TERM -- "-$pgid" 2>/dev/null || return 0
    while kill -0 -- "-$pgid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            kill -KILL -- "-$pgid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
}
