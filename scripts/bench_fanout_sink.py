#!/usr/bin/env python3
"""Fan-out benchmark, server-free mode: the component's own cost per notification.

`scripts/bench_fanout.py` measures notifications through a real XMPP server, where the server
shares the cores and may be the limit. Here a sink plays the server's side of XEP-0114 and
nothing else: it accepts the component's stream and handshake, answers its keepalive pings,
subscribes N subscriptions itself (iqs from `subK@localhost/rJ`, as a server would route them),
then only counts `<message` tags in what it reads. `examples/fanout_driver` (the real component,
release build) publishes M live batches of one reading (`go`); for each size (N subscriptions:M
readings) the table gives, median of the runs, each next to its goal:

- notif/s: notifications counted ÷ (last arrival − first), with the component pinned to one core
  (`--cpu`, by default the last CPU; the sink gets the others);
- µs CPU/notif: the component's utime + stime (/proc/<pid>/stat) from `go` until its CPU stops
  moving (the outbox marked sent) ÷ notifications; goal ≤ 10 µs;
- → committed: seconds from `go` until the first batch's row is committed, seen by a read-only
  SQLite connection to the component's store polling every 2 ms for a row id newer than before
  `go` in `publications` (where that table exists) or else `items` (both are written in the
  transaction that accepts a live batch; WAL: a reader sees only committed rows); goal < 1 s
  (the issue states it for 100 k subscriptions);
- → 1st notif: seconds from `go` until the sink reads the first notification, an upper bound of
  the acceptance (delivery starts after the commit);
- peak RSS: the largest VmRSS of the component sampled every 50 ms from `go` until its CPU stops
  moving (while it drains); goal < 128 MiB. VmHWM: the kernel's own peak, reset at `go` by
  writing 5 to /proc/<pid>/clear_refs, so it is the run's peak too (a note says when the reset
  was refused: then it is the peak since the start);
- sink CPU: the sink's own CPU, a share of one core over the run: well under one core, it is
  not what limits (one asyncio process reading 1 MiB at a time).

Setup (not measured): while subscribing, the component's store lives on a tmpfs (`--setup-dir`,
/dev/shm by default) and the component is not pinned: each subscribe iq is one SQLite commit,
and with an fsync each, 100 k subscribe iqs took minutes (10 k: 19 s on disk, 7 s on tmpfs).
The component then quits (its store closed cleanly), the store file moves to the run's
directory on disk, and the component restarts on it, pinned: the runs use a store on disk. At
most `--window` subscribe iqs are in flight (more did not help: commits are serialised). Before
each run the component must be idle (no arrival, no CPU for 1 s): a restart's demo backfill may
publish to every subscriber.

Several binaries can be compared in one session: `--driver old=PATH --driver new=PATH` starts
one component per binary (each with its own sink and SQLite store, subscribed alike) and runs
them alternately (the order alternates from run to run), so that the machine's load weighs on
both alike.

Subscriptions are spread over at most `--accounts` bare JIDs (one grant each, as many resources
as needed), so that 100 k subscriptions do not need 100 k grants.

Usage: .venv/bin/python scripts/bench_fanout_sink.py [--sizes 1000:300,10000:30,100000:3]
           [--runs 3] [--driver label=path ...] [--cpu auto|none|LIST] [--accounts 1000]
           [--setup-dir /dev/shm] [--window 200] [--keep]
(`--sizes` is a list of subscriptions:readings; `--selftest 1000000` measures the sink alone:
~470 k stanzas/s with its writer in the same process). Needs `cargo build --release --example
fanout_driver`. No root needed, no XMPP server. Linux only (/proc, taskset).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import resource
import shutil
import sys
import tempfile
import threading
import time
import types
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_fanout as fan  # noqa: E402
from bench_fanout import harness  # noqa: E402

HOST = "localhost"
SECRET = "sink-secret"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
LIMITS = """
[limits]
requests_in_flight = 1000000
requests_per_second = 1000000
requests_burst = 1000000
subscriptions_per_requester = 1000000
subscriptions_per_node = 1000000
"""

IQ_TAG = re.compile(rb"<iq\b[^>]*>")
ATTR = re.compile(rb"""\b(id|type|from|to)=(?:'([^']*)'|"([^"]*)")""")


def log(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Sink:
    """The server's side of one component stream."""

    def __init__(self, domain: str):
        self.domain = domain
        self.messages = 0
        self.first: float | None = None
        self.last: float | None = None
        self.first_wall: float | None = None
        self.target = 0
        self.done = asyncio.Event()
        self.results: dict[bytes, bytes] = {}  # iq id -> type, for our subscribe iqs
        self.answered = asyncio.Event()
        self.connected = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None
        self.closed = False

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=1 << 20)
        return self.server.sockets[0].getsockname()[1]

    def arm(self, target: int) -> None:
        self.messages, self.first, self.last, self.target = 0, None, None, target
        self.first_wall: float | None = None  # time.time() of the first arrival
        self.done = asyncio.Event()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._session(reader, writer)
        except (asyncio.CancelledError, ConnectionError):
            self.closed = True

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = b""
        while b">" not in data or not re.search(rb"<stream:stream[^>]*>", data):
            chunk = await reader.read(4096)
            if not chunk:
                return
            data += chunk
        stream_id = os.urandom(8).hex()
        writer.write(
            f"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
            f"xmlns:stream='http://etherx.jabber.org/streams' from='{self.domain}' "
            f"id='{stream_id}'>".encode()
        )
        data = data[re.search(rb"<stream:stream[^>]*>", data).end() :]
        while (m := re.search(rb"<handshake[^>]*>([0-9a-fA-F]*)</handshake>", data)) is None:
            chunk = await reader.read(4096)
            if not chunk:
                return
            data += chunk
        expected = hashlib.sha1((stream_id + SECRET).encode()).hexdigest()
        if m.group(1).decode().lower() != expected:
            writer.write(b"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                         b"</stream:error></stream:stream>")
            writer.close()
            return
        writer.write(b"<handshake/>")
        self.writer = writer
        self.connected.set()
        await self._count(reader, data[m.end() :])

    async def _count(self, reader: asyncio.StreamReader, data: bytes) -> None:
        tag = b"<message"
        tail = b""
        pending = b""  # an `<iq` tag cut by a read
        while True:
            if data:
                n = data.count(tag) + (tail + data[:7]).count(tag)
                tail = data[-7:]
                if n:
                    now = time.perf_counter()
                    self.messages += n
                    if self.first is None:
                        self.first, self.first_wall = now, time.time()
                    self.last = now
                    if self.target and self.messages >= self.target:
                        self.done.set()
                if pending or b"<i" in data:
                    pending = self._iqs(pending + data)
            data = await reader.read(1 << 20)
            if not data:
                self.closed = True
                return

    def _iqs(self, data: bytes) -> bytes:
        """Answers pings, records answers to our iqs; returns an unfinished tail."""
        end = 0
        for m in IQ_TAG.finditer(data):
            end = m.end()
            attrs = {a.group(1): a.group(2) or a.group(3) or b"" for a in ATTR.finditer(m.group(0))}
            kind, iq_id = attrs.get(b"type", b""), attrs.get(b"id", b"")
            if kind == b"get":
                # A keepalive ping (nothing else asks us anything).
                self.writer.write(
                    b"<iq type='result' from='" + attrs.get(b"to", b"") + b"' to='"
                    + attrs.get(b"from", b"") + b"' id='" + iq_id + b"'/>"
                )
            elif iq_id.startswith(b"s"):
                self.results[iq_id] = kind
                self.answered.set()
        # A tag cut by the read (`<`, `<i`, `<iq type=…`) waits for the rest.
        start = data.rfind(b"<", end)
        return data[start:] if start >= 0 and b">" not in data[start:] else b""

    async def subscribe(self, jids: list[str], window: int = 200) -> None:
        """One subscribe iq per full JID, `window` in flight at most; all must succeed."""
        assert self.writer is not None
        self.results.clear()
        sent = 0
        while len(self.results) < len(jids):
            while sent < len(jids) and sent - len(self.results) < window:
                jid = jids[sent]
                self.writer.write(
                    f"<iq type='set' id='s{sent}' from='{jid}' to='{fan.UP_JID}'><pubsub "
                    f"xmlns='{NS_PUBSUB}'><subscribe node='{fan.SERIES}' jid='{jid}'/></pubsub>"
                    f"</iq>".encode()
                )
                sent += 1
            await self.writer.drain()
            self.answered.clear()
            try:
                await asyncio.wait_for(self.answered.wait(), 30)
            except asyncio.TimeoutError:
                raise harness.HarnessError(f"subscriptions: {len(self.results)}/{sent} answered in 30 s")
        failed = [(k, v) for k, v in self.results.items() if v != b"result"]
        if failed:
            raise harness.HarnessError(f"{len(failed)} subscribe iq(s) failed, e.g. {failed[0]!r}")


def status_mib(pid: int, key: str) -> float | None:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM), in MiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_hwm(pid: int) -> bool:
    """Resets the process's VmHWM to its current RSS (`5` to /proc/<pid>/clear_refs, Linux ≥ 4.0,
    same user): VmHWM read after the run is then the peak of the run, not of the setup."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


async def sample_rss(pid: int, stop: asyncio.Event, samples: list[float], period: float = 0.05) -> None:
    """VmRSS every `period` s until `stop`."""
    while True:
        rss = status_mib(pid, "VmRSS")
        if rss is not None:
            samples.append(rss)
        try:
            await asyncio.wait_for(stop.wait(), period)
            return
        except asyncio.TimeoutError:
            pass


class CommitWatch:
    """When the component's publish transaction is committed, seen from outside: a read-only
    SQLite connection to its store polls the newest publication's row id (WAL: a reader sees
    only committed transactions and never blocks the writer). The table is `publications` where
    it exists (one row per live batch), else `items` (one PubSub item per live batch): either
    is written in the transaction that accepts the batch."""

    POLL = 0.002  # s

    def __init__(self, db: Path):
        import sqlite3

        self.conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False)
        tables = {row[0] for row in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        self.table = "publications" if "publications" in tables else "items"

    def newest(self) -> int:
        return self.conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {self.table}").fetchone()[0]

    def wait_past(self, baseline: int, stop: threading.Event, timeout: float) -> float | None:
        """time.time() when a row newer than `baseline` is first seen (polled every 2 ms), or None
        if `stop` or the timeout comes first. Runs in a thread."""
        deadline = time.monotonic() + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            if self.newest() > baseline:
                return time.time()
            time.sleep(self.POLL)
        return None

    def close(self) -> None:
        self.conn.close()


def subscriptions(n: int, accounts: int) -> tuple[list[str], list[str]]:
    """(bare JIDs with a grant, full JIDs subscribed)."""
    accounts = max(1, min(n, accounts))
    bare = [f"sub{i:05d}@{HOST}" for i in range(accounts)]
    full = [f"{bare[k % accounts]}/r{k // accounts}" for k in range(n)]
    return bare, full


@dataclass
class Run:
    label: str
    n: int
    m: int
    arrived: int
    rate: float
    comp_us: float
    sink_cpu: float  # share of one core, first arrival to last
    commit_s: float | None = None  # `go` → the first publication visible in the store
    first_s: float | None = None  # `go` → the first notification read by the sink
    rss_peak: float = 0.0  # MiB, largest VmRSS sampled during the run
    rss_before: float = 0.0  # MiB, VmRSS at the trigger
    hwm: float | None = None  # MiB, VmHWM after the run (reset at the trigger when the kernel lets us)
    note: str = ""


class Instance:
    """One component (one binary) with its own sink and store."""

    def __init__(self, label: str, binary: Path, root: Path, n: int, accounts: int, cpus: str | None,
                 window: int):
        self.label, self.binary, self.n, self.cpus, self.window = label, binary, n, cpus, window
        self.dir = root / f"{label}-{n}"
        self.bare, self.full = subscriptions(n, accounts)

    async def start(self, setup_root: Path | None) -> None:
        """Starts the component and subscribes. With `setup_root` (a tmpfs), the store lives there
        while subscribing and the component is not pinned: SQLite then spends no fsync per
        subscribe commit, which made 100 k subscribe iqs take minutes on disk. The component
        then quits (closing its store cleanly), the store moves to the run's directory on disk
        and the component restarts on it, pinned: the measured runs use a store on disk."""
        self.sink = Sink(HOST)
        port = await self.sink.start()
        server = types.SimpleNamespace(
            host=HOST, component_domain=harness.COMPONENT_DOMAIN, component_port=port,
            component_secret=SECRET,
        )
        config = fan.driver_config(server, self.dir, [b.split("@")[0] for b in self.bare]) + LIMITS
        setup = None if setup_root is None else setup_root / f"{self.label}-{self.n}"
        setup_config = config
        if setup is not None:
            setup.mkdir(parents=True)
            url = f'url = "sqlite://{self.dir / "quoalise.db"}"'
            if url not in config:
                raise harness.HarnessError(f"the component configuration has no {url!r}")
            setup_config = config.replace(url, f'url = "sqlite://{setup / "quoalise.db"}"')
        self.driver = fan.Driver(self.dir, setup_config, binary=self.binary,
                                 cpus=self.cpus if setup is None else None)
        await self.launch()
        t, c = time.monotonic(), fan.proc_cpu(self.driver.proc.pid)
        await self.sink.subscribe(self.full, self.window)
        elapsed = time.monotonic() - t
        log(f"{self.label}: {self.n} subscriptions in {elapsed:.1f} s (component CPU "
            f"{(fan.proc_cpu(self.driver.proc.pid) - c) / max(elapsed, 1e-9):.0%} of a core meanwhile"
            f"{', store on ' + str(setup_root) if setup else ''})")
        if setup is not None:
            await asyncio.to_thread(self.driver.quit)
            for f in setup.glob("quoalise.db*"):
                shutil.move(f, self.dir / f.name)
            shutil.rmtree(setup, ignore_errors=True)
            self.driver.config.write_text(config)
            self.driver.cpus = self.cpus
            await self.launch()
        await self.settle()

    async def launch(self) -> None:
        """Starts the driver and waits for its stream and its demo history."""
        self.sink.connected.clear()
        self.driver.start()
        await asyncio.wait_for(self.sink.connected.wait(), 60)
        await asyncio.to_thread(self.driver.wait_for_count, "demo history sent", self.driver.starts, 60.0)

    async def settle(self, quiet: float = 1.0) -> None:
        """Waits until the component is idle: nothing arrived and its CPU did not move for `quiet`
        s. Arrivals alone are not enough: on a (re)start the demo source's backfill may publish a
        newer reading of the benchmark's node to every subscriber, and with 100 k of them nothing
        arrives for seconds while that transaction runs; a run started meanwhile would count
        its notifications and time its commit."""
        pid = self.driver.proc.pid
        last: tuple[int, float] | None = None
        while (now := (self.sink.messages, fan.proc_cpu(pid))) != last:
            last = now
            await asyncio.sleep(quiet)

    async def run(self, m: int, first_time: int, timeout: float) -> Run:
        sink, pid = self.sink, self.driver.proc.pid
        expected = self.n * m
        sink.arm(expected)
        watch = CommitWatch(self.dir / "quoalise.db")
        baseline = watch.newest()
        stop_watch, stop_rss, samples = threading.Event(), asyncio.Event(), []
        hwm_reset = reset_hwm(pid)
        rss_before = status_mib(pid, "VmRSS") or 0.0
        sampler = asyncio.create_task(sample_rss(pid, stop_rss, samples))
        c0, s0 = fan.proc_cpu(pid), self_cpu()
        t0 = time.time()
        self.driver.send(f"go {m} {fan.USAGE_POINT} {fan.SERIES} {first_time}")
        committed = asyncio.create_task(asyncio.to_thread(watch.wait_past, baseline, stop_watch, timeout))
        note = ""
        try:
            await asyncio.wait_for(sink.done.wait(), timeout)
        except asyncio.TimeoutError:
            note = f"TIMEOUT after {timeout:.0f} s"
        s1 = self_cpu()
        # The component marks the last ones sent after writing them: until its CPU stops moving.
        c1 = fan.proc_cpu(pid)
        while True:
            await asyncio.sleep(0.3)
            c2 = fan.proc_cpu(pid)
            if c2 == c1:
                break
            c1 = c2
        stop_rss.set()
        await sampler
        hwm = status_mib(pid, "VmHWM")
        stop_watch.set()
        commit_at = await committed
        watch.close()
        answer = await asyncio.wait_for(asyncio.to_thread(self.driver.proc.stdout.readline), 30)
        if not answer.startswith("sent "):
            raise harness.HarnessError(f"driver answered {answer!r}\n{self.driver.tail()}")
        arrived = sink.messages
        span = max((sink.last or 0) - (sink.first or 0), 1e-9)
        notes = [note] if note else []
        if arrived != expected:
            notes.append(f"{arrived - expected:+d} vs expected")
        if not hwm_reset:
            notes.append("VmHWM not reset (since the start)")
        return Run(
            label=self.label, n=self.n, m=m, arrived=arrived,
            rate=arrived / span if arrived > 1 else 0.0,
            comp_us=(c1 - c0) / max(arrived, 1) * 1e6,
            sink_cpu=(s1 - s0) / span,
            commit_s=None if commit_at is None else commit_at - t0,
            first_s=None if sink.first_wall is None else sink.first_wall - t0,
            rss_peak=max(samples, default=rss_before), rss_before=rss_before, hwm=hwm,
            note="; ".join(notes),
        )

    def stop(self) -> None:
        self.driver.quit()
        self.sink.server.close()


GOAL_US = 10.0  # component CPU µs per notification, at most
GOAL_COMMIT = 1.0  # s from the trigger to the publication committed, below
GOAL_RSS = 128.0  # MiB of peak RSS while draining, below


def median(values: list) -> float | None:
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def verdict(value: float | None, ok: bool) -> str:
    return "" if value is None else (" ok" if ok else " NO")


def pinning(spec: str) -> tuple[str | None, set[int] | None]:
    """(taskset CPU list for the component, CPUs left to this process), from --cpu."""
    if spec == "none":
        return None, None
    mine = sorted(os.sched_getaffinity(0))
    if spec == "auto":
        if len(mine) < 2:
            return None, None
        return str(mine[-1]), set(mine[:-1])
    cpus = {int(c) for c in spec.split(",")}
    rest = set(mine) - cpus
    return spec, rest or None


async def main_async(args) -> int:
    drivers = []
    for spec in args.driver or [f"current={fan.DRIVER}"]:
        label, _, path = spec.partition("=")
        if not Path(path).exists():
            raise SystemExit(f"{path} does not exist: cargo build --release --example fanout_driver")
        drivers.append((label, Path(path).resolve()))
    sizes = []
    for spec in args.sizes.split(","):
        n, _, m = spec.partition(":")
        sizes.append((int(n), int(m or 10)))
    component_cpus, sink_cpus = pinning(args.cpu)
    if sink_cpus:
        os.sched_setaffinity(0, sink_cpus)
    where = (f"component pinned to CPU {component_cpus} (one core), sink on CPU "
             f"{','.join(map(str, sorted(sink_cpus))) if sink_cpus else 'any'}" if component_cpus
             else "component and sink not pinned")
    log(where)
    root = Path(tempfile.mkdtemp(prefix="quoalise-fanout-sink-"))
    setup_root = None
    if args.setup_dir:
        setup_root = Path(tempfile.mkdtemp(prefix="quoalise-fanout-setup-", dir=args.setup_dir))
    results: list[Run] = []
    first_time = int(time.time()) - 7 * 86400
    try:
        for n, m in sizes:
            instances = [Instance(label, path, root, n, args.accounts, component_cpus, args.window)
                         for label, path in drivers]
            try:
                for inst in instances:
                    await inst.start(setup_root)
                timeout = max(60.0, n * m / 2000)
                for run in range(args.runs):
                    order = instances if run % 2 == 0 else list(reversed(instances))
                    for inst in order:
                        r = await inst.run(m, first_time, timeout)
                        first_time += m
                        commit = "—" if r.commit_s is None else f"{r.commit_s:.3f} s"
                        first = "—" if r.first_s is None else f"{r.first_s:.3f} s"
                        log(f"  {r.label} N={n} M={m}: {r.arrived:,} notifications, {r.rate:,.0f}/s, "
                            f"component {r.comp_us:.1f} µs CPU/notif, committed after {commit}, first "
                            f"notification after {first}, RSS {r.rss_before:.0f} → peak {r.rss_peak:.0f} MiB "
                            f"(VmHWM {r.hwm or 0:.0f}), sink {r.sink_cpu:.0%} of a core"
                            f"{' — ' + r.note if r.note else ''}")
                        results.append(r)
            finally:
                for inst in instances:
                    if getattr(inst, "driver", None) is not None:
                        inst.stop()
    finally:
        if setup_root is not None:
            shutil.rmtree(setup_root, ignore_errors=True)
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"Fan-out, server-free (sink): median of {args.runs} run(s) per figure; {where}; "
          f"{os.cpu_count()} cores shared with whatever else runs")
    cols = (f"{'binary':<10} {'subscriptions':>13} {'readings':>8} {'notif/s':>9} {'µs CPU/notif':>13} "
            f"{'→ committed':>12} {'→ 1st notif':>12} {'peak RSS':>12} {'VmHWM':>9} {'sink CPU':>8}")
    print(cols)
    print(f"{'goal':<10} {'':>13} {'':>8} {'':>9} {'≤ ' + format(GOAL_US, 'g'):>13} "
          f"{'< ' + format(GOAL_COMMIT, 'g') + ' s':>12} {'(≥ commit)':>12} {'< ' + format(GOAL_RSS, 'g') + ' MiB':>12} "
          f"{'':>9} {'':>8}")
    print("-" * len(cols))
    for n, m in sizes:
        for label, _ in drivers:
            runs = [r for r in results if r.label == label and r.n == n]
            if not runs:
                continue
            rate, us = median([r.rate for r in runs]), median([r.comp_us for r in runs])
            commit, first = median([r.commit_s for r in runs]), median([r.first_s for r in runs])
            rss, hwm, sink = median([r.rss_peak for r in runs]), median([r.hwm for r in runs]), median([r.sink_cpu for r in runs])
            flag = "*" if any(r.note for r in runs) else ""
            commit_s = "—" if commit is None else f"{commit:.3f}{verdict(commit, commit < GOAL_COMMIT)}"
            first_s = "—" if first is None else f"{first:.3f}"
            print(f"{label:<10} {n:>13,} {m:>8} {rate:>9,.0f} {us:>9.1f}{verdict(us, us <= GOAL_US)}{flag:1} "
                  f"{commit_s:>12} {first_s:>12} {rss:>8.0f}{verdict(rss, rss < GOAL_RSS)} "
                  f"{hwm if hwm is not None else 0:>9.0f} {sink:>8.0%}")
    print("""
notif/s       notifications counted ÷ (last arrival − first arrival), the component on one core.
µs CPU/notif  the component's utime+stime from the trigger until its CPU stops moving (outbox
              marked sent) ÷ notifications. Goal ≤ 10 µs.
→ committed   s from `go` (M live batches handed to the component) until the first batch's row
              (`publications`, else `items`) is visible to a read-only SQLite reader polling every
              2 ms: the publish transaction committed, i.e. the publication accepted. Goal < 1 s
              (stated for 100 k subscriptions).
→ 1st notif   s from `go` until the sink reads the first notification: an upper bound of the
              acceptance when delivery starts only after the commit.
peak RSS      largest VmRSS of the component sampled every 50 ms from `go` until its CPU stops
              moving, in MiB. Goal < 128 MiB. VmHWM: the kernel's peak, reset at `go` (clear_refs)
              so it is the run's peak, in MiB.
sink CPU      the sink process's CPU over first → last arrival, share of one core.
ok / NO: the figure meets its goal or not; * a run had a note (see the log above).""")
    return 0


async def selftest(count: int) -> int:
    """The sink's own ceiling: a fake component (a thread, plain blocking socket) logs in and
    writes `count` notifications shaped like ours as fast as the sink reads them."""
    import socket
    import threading

    sink = Sink(HOST)
    port = await sink.start()
    stanza = fan.ceiling_stanzas(fan.FALLBACK_PAYLOAD, [f"sub00000@{HOST}/r0"], 1, 0)
    blob = stanza * 1000

    def blast() -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
                     b"xmlns:stream='http://etherx.jabber.org/streams' to='x'>")
        data = b""
        while (m := re.search(rb"id='([^']+)'", data)) is None:
            data += sock.recv(4096)
        digest = hashlib.sha1(m.group(1) + SECRET.encode()).hexdigest()
        sock.sendall(f"<handshake>{digest}</handshake>".encode())
        while b"<handshake/>" not in data:
            data += sock.recv(4096)
        for _ in range(count // 1000):
            sock.sendall(blob)
        sock.shutdown(socket.SHUT_WR)  # unread bytes at close() would reset the connection
        while sock.recv(4096):  # until the sink closes its side
            pass
        sock.close()

    sink.arm(count // 1000 * 1000)
    c0 = self_cpu()
    thread = threading.Thread(target=blast)
    thread.start()
    await asyncio.wait_for(sink.done.wait(), 120)
    c1 = self_cpu()
    sink.writer.close()
    await asyncio.to_thread(thread.join)
    span = max(sink.last - sink.first, 1e-9)
    print(f"sink: {sink.messages:,} stanzas of {len(stanza)} B in {span:.2f} s = "
          f"{sink.messages / span:,.0f}/s; sink process CPU (sink and writer thread) "
          f"{(c1 - c0) / span:.0%} of a core")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000:300,10000:30",
                        help="subscriptions:readings, comma-separated (default 1000:300,10000:30)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--driver", action="append", help="label=path of a fanout_driver (repeatable)")
    parser.add_argument("--accounts", type=int, default=1000, help="bare JIDs (grants) at most")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--cpu", default="auto",
                        help="taskset CPU list for the component (the sink gets the others); auto: the "
                             "last CPU when there are two or more; none: no pinning")
    parser.add_argument("--setup-dir", default="/dev/shm" if os.access("/dev/shm", os.W_OK) else "",
                        help="where the store lives while subscribing (a tmpfs: no fsync per subscribe; "
                             "the runs use a store on disk); empty: on disk from the start")
    parser.add_argument("--window", type=int, default=200, help="subscribe iqs in flight at most")
    parser.add_argument("--selftest", type=int, metavar="COUNT",
                        help="only measure the sink's own rate with COUNT stanzas")
    args = parser.parse_args()
    if args.selftest:
        return asyncio.run(selftest(args.selftest))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
