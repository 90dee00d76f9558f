#!/usr/bin/env python3
"""xAAL benchmark, end-to-end part: the latency from an `attributes_change` on the bus to the
PubSub notification at a subscriber.

Inside a private network namespace (loopback only, multicast route on `lo`; the script re-runs
itself under `unshare --net`), starts a private Prosody, the component binary ($QUOALISE_BIN,
default target/release/quoalise-component) with an xAAL source, a real xaal-lib power meter
(testkit/python/quoalise_testkit/xaal_devices.py) and a slixmpp subscriber to its `consumption/power/active/instant`
node. Then changes the meter's power N times, one change at a time, and measures for each the
time from just before xaal-lib sends the datagram to the arrival of the notification at the
subscriber (one clock: CLOCK_MONOTONIC is system-wide). Prints median, p99, min and max.

Usage: .venv/bin/python scripts/bench_xaal.py [--changes N] [--pause SECONDS] [--keep]
Run as root (network namespace; Prosody runs as its own user through runuser), like tests/e2e.
Called by scripts/bench.sh after `cargo build --release`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("QUOALISE_BIN", str(REPO / "target" / "release" / "quoalise-component"))
# The test kit (quoalise_testkit) of this checkout, whichever venv runs the script: it drives
# the binary of the checkout it sits in.
sys.path.insert(0, str(REPO / "testkit" / "python"))

from quoalise_testkit.harness import BINARY, connected, start_component, start_server  # noqa: E402
from quoalise_testkit.live import Inbox  # noqa: E402
from quoalise_testkit.xaal_bus import (  # noqa: E402
    SOURCE_ID,
    DeviceProcess,
    derive_key,
    in_netns,
    loopback_only,
    netns_command,
    write_xaal_ini,
    xaal_source,
)
from quoalise_testkit.xmpp import DOMAIN, items  # noqa: E402

POWER = "consumption/power/active/instant"
PASSPHRASE = "quoalise-bench-bus"
TIME_LIMIT = 300.0  # the whole measurement, seconds


async def measure(workdir: Path, changes: int, pause: float) -> list[float]:
    key = derive_key(PASSPHRASE)
    conf_dir = write_xaal_ini(workdir / "xaal-conf", key, alive_timer=60)
    server = start_server("prosody", workdir / "prosody")
    comp_dir = workdir / "component"
    comp_dir.mkdir()
    passphrase_file = comp_dir / "passphrase"
    passphrase_file.write_text(PASSPHRASE)
    component = devices = None
    try:
        component = start_component(
            server, comp_dir, alice_sees_all=False,
            sources=xaal_source(passphrase_file, ["alice@localhost"]),
        )
        devices = DeviceProcess(conf_dir, workdir / "xaal-devices.log")
        pm = f"{devices.uuids['pm']}@{DOMAIN}"
        async with connected(server, "alice", presence=True) as alice:
            deadline = time.monotonic() + 20
            while pm not in {j for j, _, _ in items(
                    await alice.plugin["xep_0030"].get_items(jid=f"{SOURCE_ID}@{DOMAIN}", timeout=10))}:
                if time.monotonic() > deadline:
                    raise SystemExit("the power meter was not discovered within 20 s")
                await asyncio.sleep(0.2)
            inbox = Inbox(alice)
            await alice.plugin["xep_0060"].subscribe(pm, POWER, timeout=10)
            latencies = []
            stop_at = time.monotonic() + TIME_LIMIT
            for i in range(changes):
                value = 1000.0 + i
                sent = await asyncio.to_thread(devices.set, "pm", power=value)
                got = None
                while got is None and time.monotonic() < min(sent + 5, stop_at):
                    got = next((n for n in inbox.live() if n.records and n.records[0].value == value), None)
                    if got is None:
                        await asyncio.sleep(0.001)
                if got is None:
                    raise SystemExit(f"change {i}: no notification within 5 s")
                latencies.append(got.received - sent)
                if time.monotonic() > stop_at:
                    print(f"time limit reached after {i + 1} changes")
                    break
                await asyncio.sleep(pause)
            return latencies
    finally:
        if devices is not None:
            devices.close()
        if component is not None:
            component.stop()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--pause", type=float, default=0.02, help="seconds between two changes")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()
    if not in_netns():
        return subprocess.run(netns_command([sys.executable, __file__, *sys.argv[1:]])).returncode
    assert loopback_only(), "not in a private network namespace"
    workdir = Path(tempfile.mkdtemp(prefix="quoalise-bench-xaal-"))
    workdir.chmod(0o755)
    try:
        latencies = asyncio.run(measure(workdir, args.changes, args.pause))
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    ms = sorted(x * 1000 for x in latencies)
    p99 = statistics.quantiles(ms, n=100, method="inclusive")[98] if len(ms) > 1 else ms[0]
    profile = "release" if "/release/" in str(BINARY) else "debug" if "/debug/" in str(BINARY) else "?"
    print(f"xAAL attributes_change -> PubSub notification, {len(ms)} changes, "
          f"component {BINARY} ({profile} build), Prosody on loopback:")
    print(f"  median {statistics.median(ms):.2f} ms   p99 {p99:.2f} ms   "
          f"min {ms[0]:.2f} ms   max {ms[-1]:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
