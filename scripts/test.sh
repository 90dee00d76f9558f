#!/usr/bin/env bash
# Runs every check and test, in order, stopping at the first failure:
#   cargo fmt --check, cargo clippy -D warnings, cargo test (Rust unit + integration tests,
#   which start their own PostgreSQL), cargo build (the binary the end-to-end tests drive),
#   pytest tests/e2e (real Prosody and ejabberd, slixmpp clients).
# Installs what the tests need first: prosody, ejabberd, lua-event, chromium, iproute2, libsodium23,
# postgresql (the server binaries; tests start their own clusters)
# (Debian packages) and the
# Python packages of requirements-test.txt in .venv/.
#
# Usage: scripts/test.sh [extra pytest arguments, e.g. -k discovery]
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

STEPS=()
RESULTS=()
TIMES=()
START=$SECONDS

summary() {
    local i
    echo
    echo "==================== summary ===================="
    for i in "${!STEPS[@]}"; do
        printf '  %-8s %5ss  %s\n' "${RESULTS[$i]}" "${TIMES[$i]}" "${STEPS[$i]}"
    done
    printf '  total %ss\n' "$((SECONDS - START))"
}

# step NAME COMMAND...: runs one step, records its outcome, stops everything on failure.
step() {
    local name="$1" t0=$SECONDS rc=0
    shift
    log "$name"
    "$@" || rc=$?
    STEPS+=("$name")
    TIMES+=("$((SECONDS - t0))")
    if [ "$rc" -ne 0 ]; then
        RESULTS+=("FAILED")
        summary
        echo "FAILED: $name (exit status $rc)"
        exit "$rc"
    fi
    RESULTS+=("ok")
}

step "install test dependencies" bash -c "source scripts/lib.sh && ensure_apt_packages prosody ejabberd lua-event chromium iproute2 libsodium23 postgresql && ensure_venv"
step "cargo fmt --all -- --check" cargo fmt --all -- --check
step "cargo clippy --all-targets -- -D warnings" cargo clippy --all-targets -- -D warnings
step "cargo test" cargo test
step "cargo build" cargo build
step "pytest -v tests/e2e" "$VENV/bin/pytest" -v tests/e2e "$@"
summary
echo "all checks passed"
