#!/usr/bin/env python3
"""Abuse benchmark: what floods cost the component, and what its outbox holds while the XMPP
server is down.

Starts a private XMPP server (Prosody by default, log level info; or ejabberd) on loopback with
the accounts alice, carol and flood00…flood19, and for each binary given (`--binary`, repeatable:
old and new alternate, `--rounds` times) runs these phases, each with a fresh component (demo
source, `--meters` meters, live readings every second, a SQLite store, grants for alice and the
flooders, default [limits]):

  disco#info 1×N     one client sends N disco#info to the component without waiting
  disco#info 20×M    20 clients send M each, all at once
  get_history 1×N    the same with one-day get_history (one-shot, form submitted: 48 records)
  get_history 20×M
  outage             alice subscribes `--subscribers` full JIDs of hers to the live node of
                     every meter, then the server is stopped for `--outage-minutes` minutes
                     while the demo source goes on publishing; the outbox's pending rows
                     (table outbox, sent_at NULL, read with sqlite3) are sampled meanwhile; then
                     the server is started again and the time to drain the outbox is measured.

For the floods it prints, per phase and binary: the requests answered (their result, or a
limit error: wait + resource-constraint), the unanswered ones (a phase waits
`--timeout` s at most, and gives up after `--stall` s without any reply: a wedged link answers
nothing more), requests answered per second (first write to last reply), carol's XEP-0199 pings
to the component meanwhile (one every 0.5 s from her own thread and connection: p50, p99, lost)
and the component's peak RSS (VmHWM from /proc/<pid>/status). Then the outage figures.

Usage: .venv/bin/python scripts/bench_abuse.py [--binary PATH]... [--rounds 1]
           [--server prosody|ejabberd] [--requests 5000] [--per-client 500]
           [--outage-minutes 10] [--meters 10] [--subscribers 10] [--max-pending N]
           [--timeout 120] [--stall 20] [--keep]
Run as root (the servers run as their own system users through runuser), like tests/e2e.
The default binary is $QUOALISE_BIN, else target/release/quoalise-component if built, else
target/debug/quoalise-component.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parents[1]
# The test kit (quoalise_testkit) of this checkout, whichever venv runs the script: it drives
# the binary of the checkout it sits in.
sys.path.insert(0, str(REPO / "testkit" / "python"))

from quoalise_testkit import harness  # noqa: E402
from quoalise_testkit.abuse import (  # noqa: E402
    NS_COMMANDS,
    PingMonitor,
    Replies,
    Tally,
    disco_info,
    merge,
    percentile,
    send_pipelined,
    subscribe,
    tally,
)
from quoalise_testkit.commands import LIVE, RAW, history_fields, identifier, iso, past_days, wait_for_records  # noqa: E402
from quoalise_testkit.harness import ESTABLISHED, SERVER_KINDS, Component, HarnessError, component_config, connected  # noqa: E402
from quoalise_testkit.xmpp import DOMAIN, SOURCE  # noqa: E402

FLOODERS = tuple(f"flood{i:02d}" for i in range(20))
ACCOUNTS = ("alice", "carol", *FLOODERS)
NS_DATA = "jabber:x:data"

REFERENCE = [
    ("Prosody 0.12 routing component → 1 client", "~5.5–7.4 k msgs/s, one core saturated (~154 µs/stanza)"),
    ("ejabberd 23.01 routing component → 1 client", "~19–28 k msgs/s (~51 µs/stanza)"),
    ("[limits] defaults", "8 in flight, 50 requests/s + burst 200 per requester, history costs 5"),
    ("served by one requester in t s at most", "200 + 50·t disco#info, (200 + 50·t)/5 get_history"),
    ("[pubsub] max_pending default", "1000 waiting notifications per subscription"),
]


def log(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def default_binary() -> Path:
    env = os.environ.get("QUOALISE_BIN")
    if env:
        return Path(env)
    release = REPO / "target" / "release" / "quoalise-component"
    return release if release.exists() else REPO / "target" / "debug" / "quoalise-component"


def start_server(kind: str, workdir: Path):
    return harness.start_server(kind, workdir, ACCOUNTS, quiet=True)


def start_component(server, workdir: Path, binary: Path, args) -> Component:
    workdir.mkdir(parents=True)
    grants = "".join(
        f'\n[[access.grant]]\njid = "{user}@{server.host}"\nusage_points = ["*"]\npurpose = "benchmark"\n'
        for user in FLOODERS
    )
    pubsub = "" if args.max_pending is None else f"\n[pubsub]\nmax_pending = {args.max_pending}\n"
    text = component_config(server, workdir, meters=args.meters, history_days=3, live_interval="1s")
    component = Component(workdir, text + grants + pubsub)
    harness.BINARY = binary  # Component.start runs harness.BINARY
    component.start()
    component.wait_established(timeout=60)
    return component


def peak_rss_kib(component: Component) -> int | None:
    try:
        status = Path(f"/proc/{component.proc.pid}/status").read_text()
    except (OSError, AttributeError):
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


# --------------------------------------------------------------------------------------------
# Floods


def history_request(iq_id: str, fields: dict[str, str]) -> str:
    form = "".join(f"<field var='{k}'><value>{escape(v)}</value></field>" for k, v in fields.items())
    return (
        f"<iq type='set' id='{iq_id}' to='{SOURCE}'><command xmlns='{NS_COMMANDS}' node='get_history' "
        f"action='execute'><x xmlns='{NS_DATA}' type='submit'>{form}</x></command></iq>"
    )


@dataclass
class FloodResult:
    phase: str
    binary: str
    tally: Tally
    seconds: float
    pings: list[float] = field(default_factory=list)
    pings_sent: int = 0
    pings_lost: int = 0
    rss_kib: int | None = None
    link_lost: int = 0
    alive: bool = True


async def flood(server, users: list[str], per_client: int, make, timeout: float, stall: float):
    """Every user sends `per_client` requests at once; returns (tally, seconds from the first
    write to the last reply, PingMonitor)."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connected(server, u, timeout=30)) for u in users]
        with PingMonitor(server) as pings:
            await asyncio.sleep(1.0)  # a few pings before
            collectors, ids = [], []
            batches = []
            for n, client in enumerate(clients):
                prefix = f"fl{n}-"
                collectors.append(Replies(client, prefix))
                batch_ids = [f"{prefix}{i}" for i in range(per_client)]
                ids.append(batch_ids)
                batches.append((client, [make(i) for i in batch_ids]))
            started = time.monotonic()
            for client, stanzas in batches:
                send_pipelined(client, stanzas)
            expected = len(users) * per_client
            while True:
                await asyncio.sleep(0.1)
                now = time.monotonic()
                got = sum(len(c.by_id) for c in collectors)
                last = max([started] + [max(c.arrived.values(), default=started) for c in collectors])
                if got >= expected or now - started > timeout or now - last > stall:
                    break
            await asyncio.sleep(1.0)  # a few pings after
        total = merge([tally(c, b) for c, b in zip(collectors, ids)])
        return total, last - started, pings


def run_flood(server, workdir: Path, binary: Path, label: str, phase: str, users, per_client, make, args,
              prepare=None) -> FloodResult:
    component = start_component(server, workdir, binary, args)
    try:
        if prepare is not None:
            asyncio.run(prepare())
        log(f"{label}: {phase}")
        total, seconds, pings = asyncio.run(flood(server, users, per_client, make, args.timeout, args.stall))
        result = FloodResult(
            phase=phase, binary=label, tally=total, seconds=seconds, pings=pings.latencies,
            pings_sent=pings.sent, pings_lost=len(pings.failures), rss_kib=peak_rss_kib(component),
            link_lost=component.count(ESTABLISHED) - 1, alive=component.running(),
        )
        log(f"{label}: {phase}: {total}; {pings.summary()}")
        return result
    finally:
        component.stop()


# --------------------------------------------------------------------------------------------
# Outage


@dataclass
class OutageResult:
    binary: str
    minutes: float
    subscriptions: int
    samples: list[tuple[float, int, int]]  # (seconds since the stop, pending rows, max per subscription)
    db_bytes: int
    reconnect_s: float | None
    drain_s: float | None
    left: int
    rss_kib: int | None


def pending(db: Path) -> tuple[int, int]:
    """(pending outbox rows, most pending rows of one subscription)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        total = conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
        most = conn.execute(
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL "
            "GROUP BY subscription_id)"
        ).fetchone()[0]
    return total, most


def db_size(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())


async def subscribe_all(server, meters: int, per_node: int) -> int:
    """alice subscribes `per_node` full JIDs of hers to the live node of every meter, a few at a
    time (under `[limits] requests_in_flight`), again while refused by a limit; returns how many
    were accepted."""
    async with connected(server, "alice") as alice:
        replies = Replies(alice, "sub-")
        todo = [(f"{99999000000001 + m}@{DOMAIN}", f"alice@{server.host}/bench-{r:02d}")
                for m in range(meters) for r in range(per_node)]
        accepted, attempt = 0, 0
        while todo and attempt < 20:
            attempt += 1
            refused = []
            for i in range(0, len(todo), 4):
                group = [(f"sub-{attempt}-{i + k}", up, jid) for k, (up, jid) in enumerate(todo[i:i + 4])]
                send_pipelined(alice, [subscribe(iq_id, up, LIVE, jid) for iq_id, up, jid in group])
                for iq_id, up, jid in group:
                    reply = await replies.one(iq_id, 30)
                    if reply is not None and reply["type"] == "result":
                        accepted += 1
                    elif reply is not None and reply["error"]["type"] == "wait":
                        refused.append((up, jid))
            todo = refused
            if todo:
                await asyncio.sleep(1.0)
        return accepted


def run_outage(server, workdir: Path, binary: Path, label: str, args) -> OutageResult:
    component = start_component(server, workdir, binary, args)
    db = workdir / "quoalise.db"
    try:
        accepted = asyncio.run(subscribe_all(server, args.meters, args.subscribers))
        log(f"{label}: outage: {accepted} subscriptions; stopping {server.kind} for {args.outage_minutes:g} min")
        time.sleep(3)
        server.stop()
        stopped = time.monotonic()
        samples = []
        while True:
            elapsed = time.monotonic() - stopped
            total, most = pending(db)
            samples.append((elapsed, total, most))
            if elapsed >= args.outage_minutes * 60:
                break
            time.sleep(min(args.sample, max(0.0, args.outage_minutes * 60 - elapsed)))
        log(f"{label}: outage: {samples[-1][1]} pending rows; starting {server.kind} again")
        size = db_size(db)
        server.start()
        restarted = time.monotonic()
        reconnect = drain = None
        deadline = restarted + args.drain_timeout
        left = samples[-1][1]
        while time.monotonic() < deadline:
            if reconnect is None and component.count(ESTABLISHED) >= 2:
                reconnect = time.monotonic() - restarted
            left, _ = pending(db)
            if reconnect is not None and left == 0:
                drain = time.monotonic() - restarted
                break
            time.sleep(0.5)
        return OutageResult(
            binary=label, minutes=args.outage_minutes, subscriptions=accepted, samples=samples,
            db_bytes=size, reconnect_s=reconnect, drain_s=drain, left=left, rss_kib=peak_rss_kib(component),
        )
    finally:
        component.stop()
        if not server.running():
            server.start()


# --------------------------------------------------------------------------------------------
# Report


def fmt_rss(kib: int | None) -> str:
    return "?" if kib is None else f"{kib / 1024:.0f} MiB"


def fmt_s(x: float | None) -> str:
    return "never" if x is None else f"{x:.1f} s"


def report(floods: list[FloodResult], outages: list[OutageResult], binaries: dict[str, Path], args) -> None:
    print()
    print("==================== abuse benchmark ====================")
    server = {"prosody": "Prosody 0.12", "ejabberd": "ejabberd 23.01"}[args.server]
    print(f"path        slixmpp clients → {server} → component, loopback, one machine")
    for label, path in binaries.items():
        print(f"binary {label}   {path}")
    print()
    head = (f"{'phase':<20} {'bin':<4} {'sent':>6} {'results':>8} {'limited':>8} {'other':>6} "
            f"{'unanswered':>10} {'answered/s':>10} {'ping p50':>9} {'ping p99':>9} {'lost':>5} "
            f"{'peak RSS':>9} {'relinks':>7}")
    print(head)
    print("-" * len(head))
    order = {p: i for i, p in enumerate(dict.fromkeys(f.phase for f in floods))}
    for f in sorted(floods, key=lambda f: order[f.phase]):
        t = f.tally
        limited = sum(n for (kind, _), n in t.outcomes.items() if kind == "wait")
        other = t.answered - t.results - limited
        rate = t.answered / f.seconds if f.seconds > 0 else float("nan")
        lost = f.pings_lost + (f.pings_sent - len(f.pings) - f.pings_lost)
        dead = "" if f.alive else " (died)"
        print(f"{f.phase:<20} {f.binary:<4} {t.sent:>6} {t.results:>8} {limited:>8} {other:>6} "
              f"{len(t.missing):>10} {rate:>10.0f} {percentile(f.pings, 50) * 1000:>7.0f}ms "
              f"{percentile(f.pings, 99) * 1000:>7.0f}ms {lost:>5} {fmt_rss(f.rss_kib):>9} "
              f"{f.link_lost:>7}{dead}")
    if outages:
        print()
        head = (f"{'outage':<8} {'bin':<4} {'subs':>5} {'pending @1min':>13} {'pending @end':>12} "
                f"{'max/sub':>8} {'rows/s':>7} {'db size':>9} {'relink':>8} {'drained':>9} "
                f"{'left':>7} {'peak RSS':>9}")
        print(head)
        print("-" * len(head))
        for o in outages:
            at_min = next((s[1] for s in o.samples if s[0] >= 60), o.samples[-1][1])
            end = o.samples[-1]
            rate = end[1] / end[0] if end[0] > 0 else float("nan")
            print(f"{o.minutes:>5g}min {o.binary:<4} {o.subscriptions:>5} {at_min:>13} {end[1]:>12} "
                  f"{end[2]:>8} {rate:>7.1f} {o.db_bytes / 1e6:>7.1f}MB {fmt_s(o.reconnect_s):>8} "
                  f"{fmt_s(o.drain_s):>9} {o.left:>7} {fmt_rss(o.rss_kib):>9}")
    print()
    print("results: requests served; limited: wait + resource-constraint;")
    print("unanswered: no reply when the phase gave up (a wedged link); relinks: 'xmpp session")
    print("established' beyond the first; lost: carol's pings unanswered within 10 s.")
    print()
    print("Reference figures (context):")
    for what, figure in REFERENCE:
        print(f"  {what:<46} {figure}")


# --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", action="append", type=Path,
                        help="component binary (repeat to compare; they alternate)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every binary (default 1)")
    parser.add_argument("--server", choices=sorted(SERVER_KINDS), default="prosody")
    parser.add_argument("--requests", type=int, default=5000, help="requests of the single flooder (5000)")
    parser.add_argument("--per-client", type=int, default=500, help="requests of each of the 20 flooders (500)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a flood phase waits at most (120)")
    parser.add_argument("--stall", type=float, default=20.0,
                        help="a flood phase gives up after this many seconds without any reply (20)")
    parser.add_argument("--outage-minutes", type=float, default=10.0,
                        help="minutes the server is down under live load (10; 0: no outage phase)")
    parser.add_argument("--meters", type=int, default=10, help="demo meters, one live reading/s each (10)")
    parser.add_argument("--subscribers", type=int, default=10,
                        help="full JIDs alice subscribes to each meter's live node (10)")
    parser.add_argument("--max-pending", type=int, default=None,
                        help="the component's [pubsub] max_pending (default: its own default)")
    parser.add_argument("--sample", type=float, default=10.0, help="outbox sampling interval, s (10)")
    parser.add_argument("--drain-timeout", type=float, default=300.0,
                        help="seconds to wait for the outbox to drain after the outage (300)")
    parser.add_argument("--phases", default="disco1,disco20,history1,history20",
                        help="flood phases to run, comma-separated (default all)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()

    binaries = {f"B{i + 1}": p.resolve() for i, p in enumerate(args.binary or [default_binary()])}
    for path in binaries.values():
        if not path.exists():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 1
    if os.geteuid() != 0:
        print("error: run as root (the XMPP servers run as their own users through runuser)", file=sys.stderr)
        return 1

    window = past_days(1)
    fields = history_fields(identifier(RAW), iso(window.start), iso(window.end))
    phases = {
        "disco1": ("disco#info 1×N", ["flood00"], args.requests, disco_info),
        "disco20": ("disco#info 20×M", list(FLOODERS), args.per_client, disco_info),
        "history1": ("get_history 1×N", ["flood00"], args.requests, lambda i: history_request(i, fields)),
        "history20": ("get_history 20×M", list(FLOODERS), args.per_client, lambda i: history_request(i, fields)),
    }
    chosen = [p for p in args.phases.split(",") if p]
    unknown = [p for p in chosen if p not in phases]
    if unknown:
        print(f"error: unknown phases {unknown}; known: {sorted(phases)}", file=sys.stderr)
        return 1

    async def history_ready():
        async with connected(server, "alice") as alice:
            await wait_for_records(alice, SOURCE, fields["identifier"], fields["start_time"],
                                   fields["end_time"], window.half_hours, timeout=60)

    workdir = Path(tempfile.mkdtemp(prefix="quoalise-bench-abuse-"))
    workdir.chmod(0o755)
    server = None
    floods: list[FloodResult] = []
    outages: list[OutageResult] = []
    n = 0
    try:
        log(f"starting {args.server} with {len(ACCOUNTS)} accounts")
        server = start_server(args.server, workdir / args.server)
        for round_ in range(args.rounds):
            for label, binary in binaries.items():
                for key in chosen:
                    phase, users, per_client, make = phases[key]
                    n += 1
                    prepare = history_ready if key.startswith("history") else None
                    floods.append(run_flood(server, workdir / f"{n:02d}-{label}-{key}", binary, label,
                                            phase.replace("N", str(per_client)).replace("M", str(per_client)),
                                            users, per_client, make, args, prepare))
                if args.outage_minutes > 0:
                    n += 1
                    outages.append(run_outage(server, workdir / f"{n:02d}-{label}-outage", binary, label, args))
        report(floods, outages, binaries, args)
        return 0
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
