#!/usr/bin/env python3
"""End-to-end history benchmark: the latency of a one-year PT30M history query (17,520
records) served from the store, through a real XMPP server, to a slixmpp client.

Starts a private Prosody (log level info) on loopback, the component binary ($QUOALISE_BIN,
default target/release/quoalise-component) with one demo meter and 366 days of history, waits
until the year is in the store, then times `get_history` over a 365-day window aligned on the
half-hour and fully in the past (exactly 17,520 half-hours), following `next` pages until the
command completes. Prints median/min/max latency, pages, records, bytes and records/s, next to
the reference figures of docs/architecture.md §9.

Usage: .venv/bin/python scripts/bench_history_e2e.py [--runs N] [--server prosody|ejabberd]
                                                      [--store sqlite|postgres] [--keep]
Run as root (the servers run as their own system users through runuser), like tests/e2e.
Called by scripts/bench.sh after `cargo build --release`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("QUOALISE_BIN", str(REPO / "target" / "release" / "quoalise-component"))
# The test kit (quoalise_testkit) of this checkout, whichever venv runs the script: it drives
# the binary of the checkout it sits in.
sys.path.insert(0, str(REPO / "testkit" / "python"))

from quoalise_testkit.commands import (  # noqa: E402
    RAW,
    STEP,
    check_page,
    command_of,
    history_fields,
    identifier,
    send_command,
)
from quoalise_testkit.harness import (  # noqa: E402
    BINARY,
    PASSWORD,
    SERVER_KINDS,
    Component,
    HarnessError,
    PgCluster,
    component_config,
    connected,
)
from slixmpp.exceptions import IqError, IqTimeout  # noqa: E402
from quoalise_testkit.xmpp import SOURCE  # noqa: E402

YEAR_DAYS = 365
EXPECTED = YEAR_DAYS * 48  # 17,520
HISTORY_DAYS = 366

REFERENCE = [
    ("Prosody 0.12 routing component → 1 client", "~5.5–7.4 k msgs/s, one core saturated (~154 µs/stanza)"),
    ("ejabberd 23.01 routing component → 1 client", "~19–28 k msgs/s (~51 µs/stanza)"),
    ("reference Python push", "1000 records per message, throttled to ~100 records/s"),
]


def log(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def start_server(kind: str, workdir: Path):
    server = SERVER_KINDS[kind](workdir)
    if kind == "prosody":
        # The test template logs every stanza at debug level; production runs at info.
        text = server.config.read_text()
        if '\tdebug = "' not in text:
            raise HarnessError(f"{server.config}: no debug log line to turn into info")
        server.config.write_text(text.replace('\tdebug = "', '\tinfo = "'))
        server.create_account("alice", PASSWORD)
        server.start()
    else:
        server.start()
        server.create_account("alice", PASSWORD)
    return server


def year_window() -> tuple[int, int]:
    """365 days of half-hours, ending on the half-hour before the last one: entirely past, and
    inside the 366 days the demo source backfilled at start."""
    end = int(time.time()) // STEP * STEP - STEP
    return end - YEAR_DAYS * 86400, end


def iso_z(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ByteCounter:
    """Counts the bytes slixmpp receives on its socket (wraps the protocol's data_received)."""

    def __init__(self, client):
        self.total = 0
        inner = client.data_received

        def counting(data: bytes) -> None:
            self.total += len(data)
            inner(data)

        client.data_received = counting


async def fetch(client, counter: ByteCounter, fields: dict[str, str], timeout: float = 15):
    """One get_history to completion; returns the <command/> of each page (checked later, out of
    the timed section), the bytes received for each page and the elapsed seconds."""
    sizes = []
    started = time.perf_counter()
    before = counter.total
    try:
        iq = await send_command(client, SOURCE, "get_history", fields, timeout=timeout)
        pages = [command_of(iq)]
        sizes.append(counter.total - before)
        while pages[-1].get("status") == "executing":
            sid = pages[-1].get("sessionid")
            before = counter.total
            iq = await send_command(client, SOURCE, "get_history", action="next", sessionid=sid, timeout=timeout)
            pages.append(command_of(iq))
            sizes.append(counter.total - before)
            if len(pages) > 1000:
                raise HarnessError("more than 1000 pages")
    except IqTimeout:
        raise HarnessError(f"no answer within {timeout:.0f} s") from None
    except IqError as e:
        raise HarnessError(f"error answer: {e.iq}") from None
    elapsed = time.perf_counter() - started
    if pages[-1].get("status") != "completed":
        raise HarnessError(f"the command ended with status {pages[-1].get('status')!r}")
    return pages, sizes, elapsed


def check(pages, start: int, end: int) -> list[int]:
    """Every half-hour of [start, end) once, in order, named after the series; returns the
    number of records of each page."""
    ident = identifier(RAW)
    times, per_page = [], []
    for cmd in pages:
        page = check_page(cmd)
        per_page.append(len(page.records))
        for record in page.records:
            if record.name != ident or record.unit != "W" or record.value is None:
                raise HarnessError(f"unexpected record {record}")
            times.append(int(record.time))
    if times != list(range(start, end, STEP)):
        raise HarnessError(
            f"{len(times)} records, expected {(end - start) // STEP} contiguous half-hours from {start}"
        )
    return per_page


async def wait_for_year(client, counter: ByteCounter, fields, timeout: float) -> float:
    """Polls until the whole year is in the store; returns how long that took."""
    started = time.monotonic()
    count = 0
    while time.monotonic() - started < timeout:
        pages, _, _ = await fetch(client, counter, fields)
        count = sum(len(check_page(cmd).records) for cmd in pages)
        if count >= EXPECTED:
            return time.monotonic() - started
        await asyncio.sleep(1.0)
    raise HarnessError(f"only {count} of {EXPECTED} records in the store after {timeout:.0f} s")


async def measure(server, runs: int, ready_timeout: float) -> dict:
    start, end = year_window()
    fields = history_fields(identifier(RAW), iso_z(start), iso_z(end))
    async with connected(server, "alice", timeout=30) as alice:
        counter = ByteCounter(alice)
        log(f"waiting until the year is in the store ({iso_z(start)} → {iso_z(end)})")
        waited = await wait_for_year(alice, counter, fields, ready_timeout)
        # Warm-up (caches, connection buffers), then the timed runs.
        pages, _, _ = await fetch(alice, counter, fields)
        check(pages, start, end)
        latencies, page_counts, byte_counts, per_page, page_bytes = [], [], [], [], []
        for i in range(runs):
            pages, page_bytes, elapsed = await fetch(alice, counter, fields)
            per_page = check(pages, start, end)
            latencies.append(elapsed)
            page_counts.append(len(pages))
            byte_counts.append(sum(page_bytes))
            log(f"run {i + 1}/{runs}: {elapsed * 1000:.1f} ms, {len(pages)} pages, {sum(per_page)} records, "
                f"{' + '.join(map(str, page_bytes))} bytes")
    return {
        "start": start,
        "end": end,
        "waited": waited,
        "latencies": latencies,
        "pages": page_counts,
        "bytes": byte_counts,
        "records": sum(per_page),
        "per_page": per_page,
        "page_bytes": page_bytes,
    }


def report(result: dict, args, server_version: str) -> None:
    lat = sorted(result["latencies"])
    median = statistics.median(lat)
    pages = sorted(set(result["pages"]))
    nbytes = statistics.median(result["bytes"])
    records = result["records"]
    print()
    print("==================== end-to-end history benchmark ====================")
    print(f"query         get_history {RAW}, {iso_z(result['start'])} → {iso_z(result['end'])}")
    print(f"path          slixmpp client → {server_version} → component ({BINARY.name}, "
          f"{args.store} store) and back")
    print(f"records       {records:,} per answer (one year of PT30M)")
    split = " + ".join(f"{n:,}" for n in result["per_page"])
    sizes = " + ".join(f"{n:,}" for n in result["page_bytes"])
    limit = "; Prosody's component limit 524,288" if args.server == "prosody" else ""
    print(f"pages         {', '.join(map(str, pages))} per answer ({split} records; {sizes} bytes "
          f"as the client received them{limit})")
    print(f"bytes         {nbytes:,.0f} received per answer ({nbytes / records:.1f} bytes/record)")
    print(f"latency       median {median * 1000:.1f} ms, min {lat[0] * 1000:.1f} ms, "
          f"max {lat[-1] * 1000:.1f} ms over {len(lat)} runs (after 1 warm-up)")
    print(f"throughput    {records / median:,.0f} records/s, {nbytes / median / 1e6:.1f} MB/s at the median")
    print(f"store ready   the whole year was in the store {result['waited']:.1f} s after the client logged in")
    print()
    print("Reference figures, docs/architecture.md §9 (context):")
    for what, figure in REFERENCE:
        print(f"  {what:<46} {figure}")


def server_version(kind: str) -> str:
    return {"prosody": "Prosody 0.12", "ejabberd": "ejabberd 23.01"}.get(kind, kind)


WORKAROUND_LIMIT = 448 * 1024


def start_component(server, workdir: Path, name: str, store_url: str | None, max_stanza_size: int | None):
    comp_dir = workdir / name
    comp_dir.mkdir()
    extra = "" if max_stanza_size is None else f"max_stanza_size = {max_stanza_size}\n"
    what = "default max_stanza_size" if max_stanza_size is None else f"max_stanza_size = {max_stanza_size}"
    log(f"starting {BINARY} (1 demo meter, {HISTORY_DAYS} days of history, {what})")
    component = Component(
        comp_dir,
        component_config(
            server, comp_dir, meters=1, history_days=HISTORY_DAYS, store_url=store_url, extra_xmpp=extra
        ),
    )
    component.start()
    component.wait_established(timeout=60)
    return component


def server_log_size(server) -> int:
    try:
        return server.log_path.stat().st_size
    except FileNotFoundError:
        return 0


def link_losses(component, server, offset: int) -> list[str]:
    """The component's and the server's log lines (from byte `offset` on) about a dropped
    component link."""
    lines = [line for line in component.log().splitlines() if "xmpp link lost" in line]
    try:
        with open(server.log_path, "rb") as f:
            f.seek(offset)
            server_lines = f.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        server_lines = []
    lines += [
        line[:300] for line in server_lines
        if "not-well-formed" in line or "stanza-too-large" in line or "invalid XML" in line
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    parser.add_argument("--server", choices=sorted(SERVER_KINDS), default="prosody")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--max-stanza-size", type=int, default=None,
                        help="the component's [xmpp] max_stanza_size (default: its own default)")
    parser.add_argument("--no-workaround", action="store_true",
                        help="if the server drops the component's link, do not measure again with "
                             f"max_stanza_size = {WORKAROUND_LIMIT}")
    parser.add_argument("--ready-timeout", type=float, default=300.0,
                        help="seconds to wait for the backfill to reach the store (default 300)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()

    if not BINARY.exists():
        print(f"error: {BINARY} does not exist: run `cargo build --release` first", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print("error: run as root (the XMPP servers run as their own users through runuser)", file=sys.stderr)
        return 1

    workdir = Path(tempfile.mkdtemp(prefix="quoalise-bench-"))
    workdir.chmod(0o755)
    server = component = pg = None
    status = 0
    try:
        log(f"starting {args.server}")
        server = start_server(args.server, workdir / args.server)
        store_url = None
        if args.store == "postgres":
            log("starting a throwaway PostgreSQL cluster")
            pg = PgCluster().start()
            store_url = pg.create_database("quoalise_bench")
        limits = [args.max_stanza_size]
        if not args.no_workaround and args.max_stanza_size is None:
            limits.append(WORKAROUND_LIMIT)
        for attempt, limit in enumerate(limits):
            offset = server_log_size(server)
            component = start_component(server, workdir, f"component-{attempt + 1}", store_url, limit)
            try:
                result = asyncio.run(measure(server, args.runs, args.ready_timeout))
                lost = link_losses(component, server, offset)
                if lost or not component.running():
                    raise HarnessError("the component lost its link during the benchmark")
            except HarnessError as e:
                lost = link_losses(component, server, offset)
                print(f"\nerror: {e}", file=sys.stderr)
                if lost:
                    print(
                        "the server dropped the component's link: the component wrote a stanza larger "
                        "than the server accepts although it pages its answers below max_stanza_size. "
                        "Log lines:\n  " + "\n  ".join(lost),
                        file=sys.stderr,
                    )
                else:
                    print(f"--- component log\n{component.tail()}", file=sys.stderr)
                status = 1
                component.stop()
                component = None
                if lost and attempt + 1 < len(limits):
                    print(
                        f"\nmeasuring again with the workaround max_stanza_size = {limits[attempt + 1]} "
                        "(the figures below are NOT those of the default configuration)\n",
                        file=sys.stderr,
                    )
                    continue
                return status
            if limit is not None:
                print(f"\nNOTE: measured with [xmpp] max_stanza_size = {limit}"
                      + (" (workaround: the default configuration failed, see above)" if status else ""))
            report(result, args, server_version(args.server))
            return status
        return status
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        if component is not None:
            print(f"--- component log\n{component.tail()}", file=sys.stderr)
        return 1
    finally:
        if component is not None:
            component.stop()
        if server is not None:
            server.stop()
        if pg is not None:
            pg.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
