#!/usr/bin/env python3
"""Fan-out benchmark, server-free mode: the component's own cost per notification.

`scripts/bench_fanout.py` measures notifications through a real XMPP server, where the server
shares the cores and may be the limit. Here a sink plays the server's side of XEP-0114 and
nothing else: it accepts the component's stream and handshake, answers its keepalive pings,
subscribes N subscriptions itself (iqs from `subK@localhost/rJ`, as a server would route them),
then only counts `<message` tags in what it reads. `examples/fanout_driver` (the real component,
release build) publishes M live batches of one reading; each run prints notifications/s (first
to last arrival) and the component's CPU per notification (utime + stime of its process, from
/proc/<pid>/stat, from the trigger until its CPU stops moving: the outbox marked sent).

The sink is one asyncio process reading 1 MiB at a time; its own CPU is printed next to the
component's (a share of one core over the run): well under one core, it is not what limits.

Several binaries can be compared in one session: `--driver old=PATH --driver new=PATH` starts
one component per binary (each with its own sink and SQLite store, subscribed alike) and runs
them alternately, so that the machine's load weighs on both alike; the median run is reported.

Subscriptions are spread over at most `--accounts` bare JIDs (one grant each, as many resources
as needed), so that 100 k subscriptions do not need 100 k grants.

Usage: .venv/bin/python scripts/bench_fanout_sink.py [--sizes 1000:300,10000:30,100000:3]
           [--runs 3] [--driver label=path ...] [--accounts 1000] [--keep]
(`--sizes` is a list of subscriptions:readings; `--selftest 1000000` measures the sink alone:
~470 k stanzas/s with its writer in the same process). Needs `cargo build --release --example
fanout_driver`. No root needed, no XMPP server.
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
                        self.first = now
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
    note: str = ""


class Instance:
    """One component (one binary) with its own sink and store."""

    def __init__(self, label: str, binary: Path, root: Path, n: int, accounts: int):
        self.label, self.binary, self.n = label, binary, n
        self.dir = root / f"{label}-{n}"
        self.bare, self.full = subscriptions(n, accounts)

    async def start(self) -> None:
        self.sink = Sink(HOST)
        port = await self.sink.start()
        server = types.SimpleNamespace(
            host=HOST, component_domain=harness.COMPONENT_DOMAIN, component_port=port,
            component_secret=SECRET,
        )
        config = fan.driver_config(server, self.dir, [b.split("@")[0] for b in self.bare]) + LIMITS
        fan.DRIVER = self.binary
        self.driver = fan.Driver(self.dir, config)
        self.driver.start()
        await asyncio.wait_for(self.sink.connected.wait(), 60)
        await asyncio.to_thread(self.driver.wait_for_count, "demo history sent", 1, 60.0)
        t = time.monotonic()
        await self.sink.subscribe(self.full)
        log(f"{self.label}: {self.n} subscriptions in {time.monotonic() - t:.1f} s")
        await self.settle()

    async def settle(self) -> None:
        """Waits until nothing arrives any more (last items sent on subscribe)."""
        last = -1
        while self.sink.messages != last:
            last = self.sink.messages
            await asyncio.sleep(0.5)

    async def run(self, m: int, first_time: int, timeout: float) -> Run:
        sink, pid = self.sink, self.driver.proc.pid
        expected = self.n * m
        sink.arm(expected)
        c0, s0 = fan.proc_cpu(pid), self_cpu()
        self.driver.send(f"go {m} {fan.USAGE_POINT} {fan.SERIES} {first_time}")
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
        answer = await asyncio.wait_for(asyncio.to_thread(self.driver.proc.stdout.readline), 30)
        if not answer.startswith("sent "):
            raise harness.HarnessError(f"driver answered {answer!r}\n{self.driver.tail()}")
        arrived = sink.messages
        span = max((sink.last or 0) - (sink.first or 0), 1e-9)
        return Run(
            label=self.label, n=self.n, m=m, arrived=arrived,
            rate=arrived / span if arrived > 1 else 0.0,
            comp_us=(c1 - c0) / max(arrived, 1) * 1e6,
            sink_cpu=(s1 - s0) / span,
            note=note + (f"; {arrived - expected:+d} vs expected" if arrived != expected else ""),
        )

    def stop(self) -> None:
        self.driver.quit()
        self.sink.server.close()


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
    root = Path(tempfile.mkdtemp(prefix="quoalise-fanout-sink-"))
    results: list[Run] = []
    first_time = int(time.time()) - 7 * 86400
    try:
        for n, m in sizes:
            instances = [Instance(label, path, root, n, args.accounts) for label, path in drivers]
            try:
                for inst in instances:
                    await inst.start()
                timeout = max(60.0, n * m / 2000)
                for run in range(args.runs):
                    order = instances if run % 2 == 0 else list(reversed(instances))
                    for inst in order:
                        r = await inst.run(m, first_time, timeout)
                        first_time += m
                        log(f"  {r.label} N={n} M={m}: {r.arrived:,} notifications, {r.rate:,.0f}/s, "
                            f"component {r.comp_us:.1f} µs CPU/notif, sink {r.sink_cpu:.0%} of a core"
                            f"{' — ' + r.note if r.note else ''}")
                        results.append(r)
            finally:
                for inst in instances:
                    if getattr(inst, "driver", None) is not None:
                        inst.stop()
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"Fan-out, server-free (sink): median of {args.runs} run(s), {os.cpu_count()} cores shared")
    print(f"{'binary':<12} {'subscriptions':>13} {'readings':>9} {'notif/s':>10} {'µs CPU/notif':>13} {'sink CPU':>9}")
    for n, m in sizes:
        for label, _ in drivers:
            runs = sorted((r for r in results if r.label == label and r.n == n), key=lambda r: r.comp_us)
            if not runs:
                continue
            med = runs[len(runs) // 2]
            flag = "*" if med.note else ""
            print(f"{label:<12} {n:>13,} {m:>9} {med.rate:>10,.0f} {med.comp_us:>12.1f}{flag} {med.sink_cpu:>9.0%}")
    print("notif/s: notifications counted ÷ (last arrival − first); µs CPU/notif: the component's")
    print("utime+stime from the trigger until its outbox is marked sent ÷ notifications; * see log.")
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
