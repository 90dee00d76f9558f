#!/usr/bin/env bash
# The history benchmark, in two parts:
#   1. in-process (benches/history.rs, release build): SenML encode and decode throughput, store
#      ingest and one-year range queries on SQLite and PostgreSQL (a throwaway cluster), and a
#      one-year PT30M get_history answered through the router;
#   2. end to end (scripts/bench_history_e2e.py, when present): the latency of that history query
#      through a real Prosody with a slixmpp client.
# Then, separately, the fan-out benchmark (scripts/bench_fanout.py, skip with --no-fanout):
# notifications/s from our component, the server's own PubSub and a trivial component, on Prosody
# and ejabberd, with 100 subscribers.
# Then the xAAL benchmark (skip with --no-xaal): decode throughput of the codec
# (benches/xaal_codec.rs) and the latency from an attributes_change on a bus to the PubSub
# notification (scripts/bench_xaal.py, in a private network namespace).
# Then the HTTP ingest benchmark (skip with --no-ingest): 50 keep-alive clients posting SenML
# packs of 100 records through loopback (scripts/bench_ingest.py); goal >= 100 k records/s.
# docs/architecture.md §9 has the reference figures; each part prints them next to ours.
#
# Usage: scripts/bench.sh [--no-e2e] [--no-fanout] [--no-xaal] [--no-ingest]
# FANOUT_BASELINE=PATH (a fanout_driver built elsewhere, e.g. from the previous release) makes
# both fan-out benchmarks alternate it (`base`) with this checkout's (`current`) in one session.
# Needs the PostgreSQL server package (initdb, pg_ctl) for part 1.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

E2E=1
FANOUT=1
XAAL=1
INGEST=1
for arg in "$@"; do
    case "$arg" in
        --no-e2e) E2E= ;;
        --no-fanout) FANOUT= ;;
        --no-xaal) XAAL= ;;
        --no-ingest) INGEST= ;;
        -h | --help)
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
            exit 0
            ;;
        *) die "unknown argument: $arg (try --help)" ;;
    esac
done

log "in-process benchmark: cargo bench --bench history (release)"
cargo bench --bench history

# ---- end-to-end part (Prosody + slixmpp) -------------------------------------------------------
# Runs scripts/bench_history_e2e.py once it exists, with the release binary in QUOALISE_BIN and
# the Python packages of requirements-test.txt (.venv/). Prosody itself is the script's business.
E2E_SCRIPT=scripts/bench_history_e2e.py
if [ -z "$E2E" ]; then
    log "end-to-end benchmark skipped (--no-e2e)"
elif [ -f "$E2E_SCRIPT" ]; then
    log "end-to-end benchmark: $E2E_SCRIPT"
    cargo build --release
    ensure_venv
    QUOALISE_BIN="$REPO_ROOT/target/release/quoalise-component" "$VENV/bin/python" "$E2E_SCRIPT"
else
    warn "$E2E_SCRIPT not found: end-to-end benchmark skipped"
fi
# ---- end of the end-to-end part ----------------------------------------------------------------

# ---- fan-out benchmark -------------------------------------------------------------------------
# Prosody and ejabberd (the e2e test packages), each with N=100 subscribers: our component
# (examples/fanout_driver, release build) vs the server's own mod_pubsub vs a trivial component.
# Takes a few minutes; its own options: .venv/bin/python scripts/bench_fanout.py --help.
if [ -z "$FANOUT" ]; then
    log "fan-out benchmark skipped (--no-fanout)"
else
    log "fan-out benchmark: scripts/bench_fanout.py (release build of examples/fanout_driver)"
    ensure_apt_packages prosody ejabberd lua-event
    cargo build --release --example fanout_driver
    ensure_venv
    DRIVERS=(--driver "current=$REPO_ROOT/target/release/examples/fanout_driver")
    if [ -n "${FANOUT_BASELINE:-}" ]; then
        DRIVERS=(--driver "base=$FANOUT_BASELINE" "${DRIVERS[@]}")
    fi
    # a/b, a/c and component CPU µs per notification on each server, next to their goals.
    "$VENV/bin/python" scripts/bench_fanout.py "${DRIVERS[@]}"
    # The server-free mode, against a sink playing the server (1 k, 10 k and 100 k
    # subscriptions): notifications/s on one core, CPU µs per notification, and for each size
    # the time until a publication is committed and the peak RSS while draining.
    "$VENV/bin/python" scripts/bench_fanout_sink.py --sizes 1000:300,10000:30,100000:3 "${DRIVERS[@]}"
fi
# ---- end of the fan-out benchmark --------------------------------------------------------------

# ---- xAAL benchmark ----------------------------------------------------------------------------
# Codec decode throughput in process, then attributes_change -> notification latency through a
# real Prosody, with a real xaal-lib power meter, inside `unshare --net` (loopback only; root).
if [ -z "$XAAL" ]; then
    log "xAAL benchmark skipped (--no-xaal)"
else
    log "xAAL codec benchmark: cargo bench --bench xaal_codec (release)"
    cargo bench --bench xaal_codec
    log "xAAL latency benchmark: scripts/bench_xaal.py (release build)"
    ensure_apt_packages prosody lua-event iproute2 libsodium23
    cargo build --release
    ensure_venv
    QUOALISE_BIN="$REPO_ROOT/target/release/quoalise-component" "$VENV/bin/python" scripts/bench_xaal.py
fi
# ---- end of the xAAL benchmark -----------------------------------------------------------------

# ---- HTTP ingest benchmark ---------------------------------------------------------------------
# requests/s, records/s and p99 latency to stored-and-published, through a real Prosody with one
# subscriber to every device (release build of the component and of examples/ingest_load).
if [ -z "$INGEST" ]; then
    log "HTTP ingest benchmark skipped (--no-ingest)"
else
    log "HTTP ingest benchmark: scripts/bench_ingest.py (release build)"
    ensure_apt_packages prosody lua-event
    cargo build --release --bin quoalise-component --example ingest_load
    ensure_venv
    "$VENV/bin/python" scripts/bench_ingest.py
fi
# ---- end of the HTTP ingest benchmark ----------------------------------------------------------
