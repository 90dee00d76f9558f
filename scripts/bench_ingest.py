#!/usr/bin/env python3
"""HTTP ingest benchmark: SenML packs posted to the component over loopback.

Starts a private Prosody and the component binary ($QUOALISE_BIN, default
target/release/quoalise-component) with one `http` source of C devices (a SQLite store in the
run's directory, the rate limit out of the way), subscribes one slixmpp client (the devices'
owner) to every device's `production/power/active/instant` node, so that each accepted pack is
also a PubSub notification, then runs the load generator
(target/release/examples/ingest_load, $INGEST_LOAD overrides): C concurrent keep-alive HTTP/1.1
clients, one per device, each posting JSON packs of R records as fast as the answers come, for
D seconds. A `204` is sent once the pack is stored and published (item and notifications
committed), so a request's latency is its latency to stored-and-published.

Prints requests/s, records/s, p50/p99/max latency and the statuses, next to the goal
(≥ 100 k records/s), and how many notifications the subscriber received meanwhile. The servers,
the component, the load generator and the subscriber share the machine's cores.

Usage: .venv/bin/python scripts/bench_ingest.py [--clients 50] [--records 100] [--seconds 20]
           [--keep] [--no-subscriber]
Run as root (Prosody runs as its own user through runuser), like tests/e2e. Needs
`cargo build --release --bin quoalise-component --example ingest_load`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("QUOALISE_BIN", str(REPO / "target" / "release" / "quoalise-component"))
sys.path.insert(0, str(REPO / "testkit" / "python"))

from quoalise_testkit.harness import BINARY, connected, free_port, start_component, start_server  # noqa: E402
from quoalise_testkit.live import Inbox  # noqa: E402
from quoalise_testkit.xmpp import DOMAIN  # noqa: E402

LOAD = Path(os.environ.get("INGEST_LOAD", REPO / "target" / "release" / "examples" / "ingest_load"))
SERIES = "production/power/active/instant"
GOAL_RECORDS_PER_S = 100_000
TOKEN_PREFIX = "bench-ingest-token-"


def sources(clients: int) -> str:
    devices = "".join(
        f'[[source.device]]\nid = "meter{i}"\ntoken = "{TOKEN_PREFIX}{i}"\nseries = ["{SERIES}"]\n'
        for i in range(clients)
    )
    return f"""\
[[source]]
type = "http"
id = "bench"
owners = ["alice@localhost"]
requests_per_second = 1000000
requests_burst = 1000000
{devices}"""


async def run(args, root: Path) -> int:
    for path in (BINARY, LOAD):
        if not path.exists():
            print(f"{path} missing: cargo build --release --bin quoalise-component --example ingest_load")
            return 2
    (root / "prosody").mkdir()
    server = start_server("prosody", root / "prosody", quiet=True)
    component = None
    try:
        web_port = free_port()
        component = start_component(
            server, root / "component", alice_sees_all=False, web_port=web_port,
            sources=sources(args.clients),
            extra_xmpp="delivery_rate = 1000000",
        )
        async with connected(server, "alice", presence=True) as alice:
            deadline = time.monotonic() + 30
            while True:
                try:
                    await alice.plugin["xep_0030"].get_info(jid=f"meter{args.clients - 1}@{DOMAIN}", timeout=10)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            for i in range(args.clients if args.subscriber else 0):
                await alice.plugin["xep_0060"].subscribe(f"meter{i}@{DOMAIN}", SERIES, timeout=10)
            inbox = Inbox(alice)
            since = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                str(LOAD), f"http://127.0.0.1:{web_port}", "bench", "meter", TOKEN_PREFIX,
                str(args.clients), str(args.records), str(args.seconds),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            if proc.returncode != 0:
                print(f"ingest_load failed ({proc.returncode}): {err.decode()}")
                return 1
            await asyncio.sleep(2)
            notified = len(inbox.live(since))
        figures = dict(kv.split("=", 1) for kv in out.decode().split())
        records_per_s = float(figures["records_per_s"])
        print(f"HTTP ingest, {args.clients} keep-alive clients, packs of {args.records} records, "
              f"{args.seconds} s, SQLite store, "
              + ("one subscriber to every device" if args.subscriber else "no subscriber"))
        print(f"  requests/s   {float(figures['requests_per_s']):>10,.0f}")
        print(f"  records/s    {records_per_s:>10,.0f}   goal >= {GOAL_RECORDS_PER_S:,}"
              f"   {'met' if records_per_s >= GOAL_RECORDS_PER_S else 'NOT met'}")
        print(f"  latency to stored-and-published: p50 {figures['p50_ms']} ms, "
              f"p99 {figures['p99_ms']} ms, max {figures['max_ms']} ms")
        print(f"  statuses {figures['statuses']}, reconnects {figures['reconnects']}, "
              f"notifications received by the subscriber {notified} (in the run + 2 s)")
        print(f"  raw: {out.decode().strip()}")
        return 0
    finally:
        if component is not None:
            component.stop()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    parser.add_argument("--no-subscriber", dest="subscriber", action="store_false",
                        help="no slixmpp subscriber: the Python client and the server's routing "
                             "of its notifications share the two cores with the component")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="quoalise-bench-ingest-"))
    root.chmod(0o755)
    try:
        return asyncio.run(run(args, root))
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
