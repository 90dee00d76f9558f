#!/usr/bin/env python3
"""Fan-out benchmark: PubSub notifications per second through a real XMPP server.

For each server (Prosody, then ejabberd), one run with the same N subscribers and M readings:

  (a) our component: `examples/fanout_driver` (the real component, `app::serve_with_events`,
      release build) publishes M live batches of one reading on node
      `consumption/power/active/instant` of 99999000000001@quoalise.localhost; N subscribers;
  (b) the server's own XEP-0060 service (`pubsub.localhost`: Prosody's mod_pubsub component,
      ejabberd's mod_pubsub): a slixmpp publisher owning node `fanout` publishes the same
      `<quoalise>` payload M times, to the same N subscribers;
  (c) the server's ceiling: a trivial XEP-0114 component (`baseline.localhost`, a subprocess
      of this script, a plain socket) that only writes N×M pre-serialised headline
      notifications shaped like ours, with the same payload, as fast as the socket takes them.

The three are interleaved (a, b, c, then again) for --runs rounds, and the median run of each
is reported, so that other processes' load weighs on the three alike; the CPU that other
processes took during each run is printed (from /proc/stat, less ours).

It prints, for each server, notifications/s for each (first to last arrival), the ratios a/b
(ours ÷ the server's own PubSub) and a/c (ours ÷ the server's ceiling; goal ≥ 0.9), and our
component's CPU time per notification (utime+stime of the driver process over the run, until
its outbox is written and marked sent; goal ≤ 10 µs), each next to its goal, then the reference
figures of docs/architecture.md §9.

Several binaries can be compared in one session: `--driver old=PATH --driver new=PATH`. Each gets
its own directory and SQLite store under the same component domain (one connects at a time):
the subscribers subscribe to each once; then each round runs (a) for every binary (the order
alternates from round to round; switching quits one and restarts the other on its store, where
its subscriptions persist), then (b) and (c); the table has one row per server and binary.

Subscribers: N accounts sub000…, one c2s session each (resource `bench`), subscribed by full
JID. They are lean raw-socket receivers (SASL PLAIN without TLS on loopback, XEP-0060 subscribe
iqs, then they only count `<message` tags in what they read), all in this process. slixmpp
(with xep_0060, `pubsub_publish` events) was measured at ~100–140 µs of client CPU per
notification with 100 clients in one process: it saturates a core at ~10 k notifications/s on
ejabberd, below the server's ceiling, so it would measure the client. Their CPU is printed (the
`client` column: this process, which also runs the (b) publisher). The servers, the component
and the clients share the same cores: the figures are comparable with each other, not with a
dedicated server.

Our component runs with `[xmpp] delivery_rate = 1000000` so that its rate limiter (2000/s in the
example configuration) is not what is measured, a SQLite store in the run's directory, one demo
meter (`history_days = 1`, `live_interval = "1h"` so the demo's own live readings stay out of
the run), and one grant per subscriber (each notification is checked against its grant).

Its server-free mode, the component's own cost with nothing else in the way (a sink plays the
server, 1 k to 100 k subscriptions), is `scripts/bench_fanout_sink.py`.

Usage: .venv/bin/python scripts/bench_fanout.py [-n 100] [-m 300] [--runs 3]
           [--servers prosody,ejabberd] [--driver LABEL=PATH ...] [--component PATH] [--keep]
Run as root (the servers run as their own system users through runuser), like tests/e2e.
Needs `cargo build --release --example fanout_driver`: without --driver/--component the binary
of this checkout, target/release/examples/fanout_driver ($FANOUT_DRIVER overrides the path);
scripts/bench.sh builds it and runs this script.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import inspect
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The test kit (quoalise_testkit) of this checkout, whichever venv runs the script: it drives
# the binary of the checkout it sits in.
sys.path.insert(0, str(REPO / "testkit" / "python"))

from quoalise_testkit import harness  # noqa: E402

DRIVER = Path(os.environ.get("FANOUT_DRIVER", REPO / "target" / "release" / "examples" / "fanout_driver"))
TEMPLATES = REPO / "scripts" / "fanout"

PUBSUB_DOMAIN = "pubsub.localhost"
# The trivial component's domain: as long as quoalise.localhost, so its notifications have the
# same size as ours.
CEILING_DOMAIN = "baseline.localhost"
USAGE_POINT = "99999000000001"
SERIES = "consumption/power/active/instant"
UP_JID = f"{USAGE_POINT}@{harness.COMPONENT_DOMAIN}"
CEILING_FROM = f"{USAGE_POINT}@{CEILING_DOMAIN}"
NODE_B = "fanout"
RESOURCE = "bench"
PUBLISHER = "publisher"
DELIVERY_RATE = 1_000_000
CLK_TCK = os.sysconf("SC_CLK_TCK")

NS_STREAM = "http://etherx.jabber.org/streams"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_CLIENT = "jabber:client"

REFERENCE = [
    ("Prosody 0.12 routing component → 1 client", "~5.5–7.4 k msgs/s, one core saturated (~154 µs/stanza)"),
    ("ejabberd 23.01 routing component → 1 client", "~19–28 k msgs/s (~51 µs/stanza)"),
    ("naive component cost per SenML notification", "~40 µs CPU"),
]

# Used for (b) and (c) only if no notification of (a) could be captured (then said so).
FALLBACK_PAYLOAD = (
    "<quoalise xmlns='urn:quoalise:0'><data><meta><device type='electricity-meter'>"
    "<identifier authority='demo' type='prm' value='99999000000001'/></device>"
    "<measurement name='active-power' direction='consumption' quantity='power' "
    "type='electrical' unit='W' aggregation='mean' sampling-interval='PT1H'/></meta>"
    "<sensml xmlns='urn:ietf:params:xml:ns:senml'><senml "
    "bn='urn:dev:prm:99999000000001_consumption/power/active/instant' bt='1700000000' bu='W' "
    "v='1000'/></sensml></data></quoalise>"
)


def log(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Servers: the harness's, with the benchmark's templates (mod_pubsub, log level info)


class BenchProsody(harness.Prosody):
    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.config.write_text(
            harness.render(
                TEMPLATES / "prosody.cfg.lua.in",
                {
                    "DIR": self.dir,
                    "C2S_PORT": self.c2s_port,
                    "COMPONENT_PORT": self.component_port,
                    "COMPONENT_DOMAIN": self.component_domain,
                    "COMPONENT_SECRET": self.component_secret,
                    "PUBSUB_DOMAIN": PUBSUB_DOMAIN,
                    "CEILING_DOMAIN": CEILING_DOMAIN,
                    "PUBLISHER": f"{PUBLISHER}@{self.host}",
                },
            )
        )
        harness.chown_tree(self.dir, self.user)


class BenchEjabberd(harness.Ejabberd):
    def __init__(self, workdir: Path):
        super().__init__(workdir)
        (self.dir / "ejabberd.yml").write_text(
            harness.render(
                TEMPLATES / "ejabberd.yml.in",
                {
                    "C2S_PORT": self.c2s_port,
                    "COMPONENT_PORT": self.component_port,
                    "COMPONENT_DOMAIN": self.component_domain,
                    "COMPONENT_SECRET": self.component_secret,
                    "PUBSUB_DOMAIN": PUBSUB_DOMAIN,
                    "CEILING_DOMAIN": CEILING_DOMAIN,
                },
            )
        )
        harness.chown_tree(self.dir, self.user)


SERVERS = {"prosody": BenchProsody, "ejabberd": BenchEjabberd}


def subscriber_names(n: int) -> list[str]:
    return [f"sub{i:03d}" for i in range(n)]


def start_server(kind: str, workdir: Path, users: list[str]) -> harness.XmppServer:
    server = SERVERS[kind](workdir)

    def register_all():
        # prosodyctl and ejabberdctl start one process per account: a few at a time.
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda u: server.create_account(u, harness.PASSWORD), users))

    if kind == "prosody":
        register_all()  # prosodyctl writes the account files, server running or not
        server.start()
    else:
        server.start()
        try:
            register_all()
        except BaseException:
            server.stop()
            raise
    return server


# --------------------------------------------------------------------------------------------
# CPU accounting from /proc


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()  # fields from 3 (state) on


def proc_cpu(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / CLK_TCK


def group_cpu(pgid: int) -> float:
    """utime + stime of every live process of a process group, in seconds."""
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields is not None and int(fields[2]) == pgid:
                total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def system_busy() -> float:
    """CPU time spent by the whole machine (all cores, not idle), in seconds."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------------------------
# Lean receivers


class Tally:
    """Notifications counted by every receiver since the last arm()."""

    def __init__(self):
        self.arm(0)

    def arm(self, target: int) -> None:
        self.target = target
        self.total = 0
        self.first: float | None = None
        self.last: float | None = None
        self.done = asyncio.Event()

    def add(self, n: int, now: float) -> None:
        self.total += n
        if self.first is None:
            self.first = now
        self.last = now
        if self.target and self.total >= self.target:
            self.done.set()


class Receiver:
    """One c2s session: logs in, subscribes with iqs, then only counts `<message` tags."""

    HEADER = (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' to='{host}' version='1.0'>"
    )

    def __init__(self, user: str, host: str, tally: Tally):
        self.user = user
        self.host = host
        self.jid = f"{user}@{host}/{RESOURCE}"
        self.tally = tally
        self.count = 0
        self.capture: bytearray | None = None
        self.closed = False
        self._task: asyncio.Task | None = None
        self._ids = 0

    # -- setup phase: a pull parser over the stream
    def _new_stream(self) -> None:
        self._parser = ET.XMLPullParser(events=("start", "end"))
        self._depth = 0
        self._root = None
        self._stanzas: list[ET.Element] = []
        self.writer.write(self.HEADER.format(host=self.host).encode())

    async def _stanza(self, timeout: float = 15.0) -> ET.Element:
        deadline = time.monotonic() + timeout
        while not self._stanzas:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise harness.HarnessError(f"{self.jid}: no answer within {timeout:.0f} s")
            data = await asyncio.wait_for(self.reader.read(65536), remaining)
            if not data:
                raise harness.HarnessError(f"{self.jid}: the server closed the stream")
            self._parser.feed(data)
            for event, element in self._parser.read_events():
                if event == "start":
                    if self._root is None:
                        self._root = element
                    self._depth += 1
                else:
                    self._depth -= 1
                    if self._depth == 1:
                        self._stanzas.append(element)
                        self._root.remove(element)
        return self._stanzas.pop(0)

    async def _expect(self, tag: str) -> ET.Element:
        stanza = await self._stanza()
        if stanza.tag != tag:
            raise harness.HarnessError(f"{self.jid}: expected {tag}, got {ET.tostring(stanza)[:300]!r}")
        return stanza

    async def iq(self, body: str, to: str | None = None, kind: str = "set") -> ET.Element:
        """Sends an iq and returns its answer (other stanzas meanwhile are dropped)."""
        self._ids += 1
        iq_id = f"r{self._ids}"
        to_attr = f" to='{to}'" if to else ""
        self.writer.write(f"<iq type='{kind}' id='{iq_id}'{to_attr}>{body}</iq>".encode())
        while True:
            stanza = await self._stanza()
            if stanza.tag == f"{{{NS_CLIENT}}}iq" and stanza.get("id") == iq_id:
                return stanza

    async def login(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self._new_stream()
        features = await self._expect(f"{{{NS_STREAM}}}features")
        mechanisms = {m.text for m in features.iter(f"{{{NS_SASL}}}mechanism")}
        if "PLAIN" not in mechanisms:
            raise harness.HarnessError(f"{self.jid}: no SASL PLAIN among {sorted(mechanisms)}")
        token = base64.b64encode(f"\0{self.user}\0{harness.PASSWORD}".encode()).decode()
        self.writer.write(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>".encode())
        answer = await self._stanza()
        if answer.tag != f"{{{NS_SASL}}}success":
            raise harness.HarnessError(f"{self.jid}: authentication failed: {ET.tostring(answer)[:300]!r}")
        self._new_stream()
        features = await self._expect(f"{{{NS_STREAM}}}features")
        bound = await self.iq(f"<bind xmlns='{NS_BIND}'><resource>{RESOURCE}</resource></bind>")
        got = bound.findtext(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid")
        if bound.get("type") != "result" or got != self.jid:
            raise harness.HarnessError(f"{self.jid}: bind failed: {ET.tostring(bound)[:300]!r}")
        session = features.find(f"{{{NS_SESSION}}}session")
        if session is not None and session.find(f"{{{NS_SESSION}}}optional") is None:
            await self.iq(f"<session xmlns='{NS_SESSION}'/>")
        self.writer.write(b"<presence/>")

    async def subscribe(self, service: str, node: str) -> None:
        answer = await self.iq(
            f"<pubsub xmlns='{NS_PUBSUB}'><subscribe node='{node}' jid='{self.jid}'/></pubsub>", to=service
        )
        state = None
        for sub in answer.iter(f"{{{NS_PUBSUB}}}subscription"):
            state = sub.get("subscription")
        if answer.get("type") != "result" or state not in ("subscribed", None):
            raise harness.HarnessError(
                f"{self.jid}: subscribing to {service} {node} failed: {ET.tostring(answer)[:500]!r}"
            )

    # -- counting phase: the reader only counts from here on
    def start_counting(self) -> None:
        self._task = asyncio.create_task(self._count())

    async def _count(self) -> None:
        tag = b"<message"
        tail = b""
        reader, tally = self.reader, self.tally
        while True:
            data = await reader.read(1 << 18)
            if not data:
                self.closed = True
                return
            # A tag cut between two reads straddles tail + head; it cannot lie in either alone.
            n = data.count(tag) + (tail + data[:7]).count(tag)
            tail = data[-7:]
            if n:
                self.count += n
                tally.add(n, time.perf_counter())
            if self.capture is not None and len(self.capture) < 65536:
                self.capture += data

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        with contextlib.suppress(Exception):
            self.writer.write(b"</stream:stream>")
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2)


async def gather_bounded(coros, limit: int = 20):
    sem = asyncio.Semaphore(limit)

    async def one(coro):
        async with sem:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


# --------------------------------------------------------------------------------------------
# (a) our component, driven by examples/fanout_driver


class Driver(harness.Component):
    """The component as `fanout_driver <config>`: commands on stdin, answers on stdout, log on
    stderr (the harness's Component log file). `binary` defaults to DRIVER; `cpus` (a taskset
    CPU list such as "1") pins the process from its start, so its runtime sizes itself to them."""

    def __init__(self, workdir: Path, config_text: str, binary: Path | None = None, cpus: str | None = None):
        super().__init__(workdir, config_text)
        self.binary = binary
        self.cpus = cpus
        self.starts = 0  # start() calls: the log file accumulates their lines

    def start(self) -> None:
        binary = self.binary or DRIVER
        if not binary.exists():
            raise harness.HarnessError(
                f"{binary} does not exist: run `cargo build --release --example fanout_driver`"
            )
        command = [str(binary), str(self.config)]
        if self.cpus:
            command = ["taskset", "-c", self.cpus, *command]  # taskset execs: same pid
        self.starts += 1
        env = dict(os.environ, NO_COLOR="1")
        env.pop("RUST_LOG", None)
        env.pop("QUOALISE_XMPP_SECRET", None)
        log_file = open(self.log_path, "ab")
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            cwd=self.dir,
            env=env,
            start_new_session=True,
            text=True,
            bufsize=1,
        )
        log_file.close()

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def quit(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            self.send("quit")
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
            self.proc = None
        except subprocess.TimeoutExpired:
            log("the driver did not stop on `quit`; stopping it")
            self.stop()


def driver_config(server: harness.XmppServer, workdir: Path, users: list[str]) -> str:
    options = dict(extra_xmpp=f"delivery_rate = {DELIVERY_RATE}\n", meters=1, history_days=1, log_level="info")
    live = "1h"  # the demo's own live readings stay out of the runs
    if "live_interval" in inspect.signature(harness.component_config).parameters:
        text = harness.component_config(server, workdir, live_interval=live, **options)
    else:
        text = harness.component_config(server, workdir, **options)
        text = re.sub(r'(?m)^live_interval = "[^"]*"$', f'live_interval = "{live}"', text)
    if f'live_interval = "{live}"' not in text:
        raise harness.HarnessError("harness.component_config: cannot set the demo's live_interval")
    grants = "".join(
        f'\n[[access.grant]]\njid = "{u}@{server.host}"\nusage_points = ["{USAGE_POINT}"]\n'
        f'purpose = "fan-out benchmark"\n'
        for u in users
    )
    return text + grants


# --------------------------------------------------------------------------------------------
# (c) the ceiling: a trivial component writing pre-serialised stanzas


def ceiling_sender_main(port: int, domain: str, path: str) -> int:
    """Runs in a subprocess: XEP-0114 handshake, `ready`, then on `go` writes the file's bytes
    as fast as the socket takes them, prints `written`, and keeps the stream open until `quit`."""
    secret = os.environ["FANOUT_SECRET"]
    stanzas = Path(path).read_bytes()
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.sendall(
        f"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
        f"xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>".encode()
    )
    data = b""
    while (m := re.search(rb"<stream:stream[^>]*\bid=['\"]([^'\"]+)['\"]", data)) is None:
        chunk = sock.recv(4096)
        if not chunk:
            print(f"closed before the stream header: {data[:300]!r}", flush=True)
            return 1
        data += chunk
    digest = hashlib.sha1(m.group(1) + secret.encode()).hexdigest()
    sock.sendall(f"<handshake>{digest}</handshake>".encode())
    while b"<handshake" not in data[m.end() :]:
        if b"<stream:error" in data[m.end() :]:
            print(f"refused: {data[m.end():][:300]!r}", flush=True)
            return 1
        chunk = sock.recv(4096)
        if not chunk:
            print(f"closed during the handshake: {data[m.end():][:300]!r}", flush=True)
            return 1
        data += chunk
    sock.settimeout(None)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 0
    started = time.time()
    sock.sendall(stanzas)
    print(f"written {started:.6f} {time.time():.6f}", flush=True)
    sys.stdin.readline()  # quit, or end of input
    with contextlib.suppress(OSError):
        sock.sendall(b"</stream:stream>")
        sock.close()
    return 0


def ceiling_stanzas(payload: str, subscribers: list[str], m: int, run: int) -> bytes:
    """N×M notifications shaped like our component's (one item id per batch, one message id per
    notification), round-robin over subscribers like a fan-out."""
    out = []
    for k in range(m):
        item = f"c{run}-{k}"
        for n, jid in enumerate(subscribers):
            out.append(
                f"<message type='headline' id='c{run}-{k}-{n}' from='{CEILING_FROM}' to='{jid}'>"
                f"<event xmlns='{NS_EVENT}'><items node='{SERIES}'><item id='{item}'>{payload}"
                f"</item></items></event></message>"
            )
    return "".join(out).encode()


# --------------------------------------------------------------------------------------------
# Runs


@dataclass
class Result:
    server: str
    mode: str  # a, b, c
    notifications: int
    expected: int
    rate: float  # notifications/s, first to last arrival
    span: float  # first to last arrival, s
    latency: float  # trigger to first arrival, s
    total: float  # trigger to last arrival, s
    server_cpu_us: float  # server CPU µs per notification
    client_cpu: float  # receivers' process CPU, fraction of one core over trigger → last arrival
    component_cpu_us: float | None = None  # (a) only
    per_receiver: tuple[int, int] = (0, 0)  # min, max notifications per receiver
    extra: int = 0  # notifications after the expected count (duplicates)
    others: float = 0.0  # CPU used by other processes on the machine during the run, in cores
    label: str = ""  # (a): which binary (--driver label)
    note: str = ""


@dataclass
class Bench:
    n: int
    m: int
    runs: int
    timeout: float
    drivers: list[tuple[str, Path]] = field(default_factory=list)  # (label, fanout_driver binary)
    results: list[Result] = field(default_factory=list)
    payload_bytes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


async def measure(
    bench: Bench,
    server: harness.XmppServer,
    mode: str,
    receivers: list[Receiver],
    tally: Tally,
    trigger,
    component_pid: int | None = None,
    helper_pid: int | None = None,
    settle: float = 1.0,
) -> Result:
    """Arms the counters, calls `trigger()` (may be a coroutine), waits for N×M notifications
    (or the timeout), then lets things settle and counts what else arrived."""
    expected = bench.n * bench.m
    for r in receivers:
        r.count = 0
    tally.arm(expected)
    ours = [lambda: group_cpu(server.proc.pid), self_cpu]
    ours += [lambda pid=pid: proc_cpu(pid) for pid in (component_pid, helper_pid) if pid]
    busy0, ours0 = system_busy(), sum(f() for f in ours)
    cpu_server0, cpu_self0 = group_cpu(server.proc.pid), self_cpu()
    cpu_comp0 = proc_cpu(component_pid) if component_pid else 0.0
    t0 = time.perf_counter()
    result = trigger()
    if asyncio.iscoroutine(result):
        await result
    note = ""
    try:
        await asyncio.wait_for(tally.done.wait(), bench.timeout)
    except asyncio.TimeoutError:
        note = f"TIMEOUT after {bench.timeout:.0f} s"
    cpu_self1 = self_cpu()
    arrived = tally.total
    first, last = tally.first or t0, tally.last or t0
    await asyncio.sleep(settle)  # the component marks its outbox sent; stragglers arrive
    cpu_server1 = group_cpu(server.proc.pid)
    cpu_comp1 = proc_cpu(component_pid) if component_pid else 0.0
    busy1, ours1, t1 = system_busy(), sum(f() for f in ours), time.perf_counter()
    span = max(last - first, 1e-9)
    counts = [r.count for r in receivers]
    if any(r.closed for r in receivers):
        note = (note + "; " if note else "") + f"{sum(r.closed for r in receivers)} receiver(s) disconnected"
    return Result(
        server=server.kind,
        mode=mode,
        notifications=arrived,
        expected=expected,
        rate=arrived / span if arrived > 1 else 0.0,
        span=span,
        latency=first - t0,
        total=last - t0,
        server_cpu_us=(cpu_server1 - cpu_server0) / max(arrived, 1) * 1e6,
        client_cpu=(cpu_self1 - cpu_self0) / max(last - t0, 1e-9),
        component_cpu_us=((cpu_comp1 - cpu_comp0) / max(arrived, 1) * 1e6) if component_pid else None,
        per_receiver=(min(counts), max(counts)),
        extra=tally.total - arrived,
        others=max(0.0, (busy1 - busy0) - (ours1 - ours0)) / (t1 - t0),
        note=note,
    )


def report_run(r: Result) -> None:
    comp = f", component {r.component_cpu_us:.0f} µs CPU/notif" if r.component_cpu_us is not None else ""
    log(
        f"  {r.server} ({r.mode}{' ' + r.label if r.label else ''}): {r.notifications}/{r.expected} notifications, {r.rate:,.0f}/s "
        f"over {r.span:.2f} s (first after {r.latency * 1000:.0f} ms), server {r.server_cpu_us:.0f} µs "
        f"CPU/notif{comp}, client {r.client_cpu:.0%} of a core, per subscriber "
        f"{r.per_receiver[0]}–{r.per_receiver[1]}{', +' + str(r.extra) + ' late' if r.extra else ''}, "
        f"other processes {r.others:.2f} cores"
        f"{' — ' + r.note if r.note else ''}"
    )


def extract_payload(capture: bytes | None) -> str | None:
    if not capture:
        return None
    m = re.search(rb"<quoalise[\s>][\s\S]*?</quoalise>", capture)
    return m.group(0).decode() if m else None


class Components:
    """One component per binary (--driver), each with its own directory and SQLite store, all
    under the same component domain: one is connected at a time. Switching quits the active one
    (a graceful stream close) and restarts the other on its store, where its subscriptions
    persist."""

    def __init__(self, server: harness.XmppServer, workdir: Path, users: list[str], drivers):
        self.server = server
        self.drivers: dict[str, Driver] = {}
        for label, binary in drivers:
            comp_dir = workdir / f"component-{label}"
            comp_dir.mkdir(parents=True)
            self.drivers[label] = Driver(comp_dir, driver_config(server, comp_dir, users), binary=binary)
        self.active: str | None = None

    async def switch(self, label: str) -> Driver:
        driver = self.drivers[label]
        if self.active == label:
            return driver
        if self.active is not None:
            await asyncio.to_thread(self.drivers[self.active].quit)
        self.active = label
        driver.start()
        await asyncio.to_thread(driver.wait_established, driver.starts, 60.0)
        await asyncio.to_thread(driver.wait_for_count, "demo history sent", driver.starts, 60.0)
        return driver

    def quit(self) -> None:
        for driver in self.drivers.values():
            driver.quit()


async def settle(tally: Tally, pid: int, quiet: float = 1.0) -> None:
    """Waits until the component (`pid`) is idle after a restart: no notification arrived and
    its CPU did not move for `quiet` s (its demo source's backfill may publish a reading)."""
    tally.arm(0)
    last: tuple[int, float] | None = None
    while (now := (tally.total, proc_cpu(pid))) != last:
        last = now
        await asyncio.sleep(quiet)


async def bench_server(bench: Bench, kind: str, root: Path) -> None:
    users = subscriber_names(bench.n)
    workdir = root / kind
    log(f"{kind}: starting, registering {bench.n + 1} accounts")
    server = await asyncio.to_thread(start_server, kind, workdir / "server", users + [PUBLISHER])
    components: Components | None = None
    receivers: list[Receiver] = []
    stack = contextlib.AsyncExitStack()
    labels = [label for label, _ in bench.drivers]
    try:
        # --- our component(s)
        components = Components(server, workdir, users, bench.drivers)
        await components.switch(labels[0])

        # --- the server's PubSub node, owned by a slixmpp publisher
        publisher = await stack.enter_async_context(harness.connected(server, PUBLISHER))
        publisher.register_plugin("xep_0060")
        pubsub = publisher.plugin["xep_0060"]
        await pubsub.create_node(PUBSUB_DOMAIN, NODE_B, timeout=15)

        # --- the subscribers, subscribed to each component's node (its own store) and to (b)'s
        tally = Tally()
        receivers = [Receiver(u, server.host, tally) for u in users]
        t = time.monotonic()
        await gather_bounded((r.login(server.c2s_port) for r in receivers), limit=20)
        for label in labels:
            await components.switch(label)
            await gather_bounded((r.subscribe(UP_JID, SERIES) for r in receivers), limit=20)
        await gather_bounded((r.subscribe(PUBSUB_DOMAIN, NODE_B) for r in receivers), limit=20)
        log(f"{kind}: {len(receivers)} subscribers logged in and subscribed to both nodes in "
            f"{time.monotonic() - t:.1f} s")
        for r in receivers:
            r.start_counting()
        await asyncio.sleep(1.0)  # the last published item sent on subscribe, presences

        # --- rounds of (a) for each binary, (b), (c), interleaved so that a change in the
        # machine's load (other processes) weighs on all alike; the binaries' order alternates
        state = {"payload": None}
        for run in range(bench.runs):
            for label in labels if run % 2 == 0 else labels[::-1]:
                if components.active != label:
                    driver = await components.switch(label)
                    await settle(tally, driver.proc.pid)
                await run_a(bench, server, components.drivers[label], receivers, tally, run, state, label)
            await run_b(bench, server, pubsub, receivers, tally, run, state)
            await run_c(bench, server, workdir, receivers, tally, run, state)
        if state["payload"] is None:
            bench.notes.append(f"{kind}: no notification captured in (a); (b) and (c) used a built-in payload")
    finally:
        for r in receivers:
            await r.close()
        with contextlib.suppress(Exception):
            await stack.aclose()
        await asyncio.sleep(0.2)  # lets slixmpp's cancelled tasks finish before the loop moves on
        if components is not None:
            components.quit()
        server.stop()


async def run_a(bench, server, driver, receivers, tally, run, state, label) -> None:
    """(a): M live batches through our component (binary `label`)."""
    receivers[0].capture = bytearray() if state["payload"] is None else None
    first_time = int(time.time()) - 7 * 86400 + run * bench.m  # distinct readings in each run
    res = await measure(
        bench, server, "a", receivers, tally,
        lambda: driver.send(f"go {bench.m} {USAGE_POINT} {SERIES} {first_time}"),
        component_pid=driver.proc.pid,
    )
    sent = await asyncio.wait_for(asyncio.to_thread(driver.proc.stdout.readline), 10)
    if not sent.startswith("sent "):
        raise harness.HarnessError(f"driver answered {sent!r}\n{driver.tail()}")
    res.label = label
    report_run(res)
    bench.results.append(res)
    if state["payload"] is None:
        state["payload"] = extract_payload(receivers[0].capture)
        if state["payload"] is not None:
            bench.payload_bytes[server.kind] = len(state["payload"].encode())
    receivers[0].capture = None


def payload_of(state) -> str:
    return state["payload"] or FALLBACK_PAYLOAD


async def run_b(bench, server, pubsub, receivers, tally, run, state) -> None:
    """(b): the same payload published M times on the server's own PubSub service."""
    payload_el = ET.fromstring(payload_of(state))
    pending: list[asyncio.Future] = []

    def publish_all():
        pending.extend(
            asyncio.ensure_future(
                pubsub.publish(PUBSUB_DOMAIN, NODE_B, id=f"b{run}-{k}", payload=payload_el, timeout=60)
            )
            for k in range(bench.m)
        )

    res = await measure(bench, server, "b", receivers, tally, publish_all)
    results = await asyncio.gather(*pending, return_exceptions=True)
    failed = [e for e in results if isinstance(e, BaseException)]
    if failed:
        res.note = (res.note + "; " if res.note else "") + f"{len(failed)} publish error(s): {failed[0]!r}"
    report_run(res)
    bench.results.append(res)


async def run_c(bench, server, workdir, receivers, tally, run, state) -> None:
    """(c): N×M pre-serialised notifications from the trivial component."""
    stanzas_file = workdir / f"ceiling-{run}.xml"
    stanzas_file.write_bytes(ceiling_stanzas(payload_of(state), [r.jid for r in receivers], bench.m, run))
    sender = await asyncio.to_thread(start_ceiling_sender, server, stanzas_file)
    try:
        res = await measure(bench, server, "c", receivers, tally, lambda: ceiling_go(sender), helper_pid=sender.pid)
        written = await asyncio.wait_for(asyncio.to_thread(sender.stdout.readline), 30)
        if not written.startswith("written "):
            res.note = (res.note + "; " if res.note else "") + f"sender: {written.strip()!r}"
    finally:
        stop_ceiling_sender(sender)
    stanzas_file.unlink()
    report_run(res)
    bench.results.append(res)


def start_ceiling_sender(server: harness.XmppServer, stanzas: Path) -> subprocess.Popen:
    """The trivial component, logged in (it may take a moment for the server to let go of the
    previous run's session)."""
    env = dict(os.environ, FANOUT_SECRET=server.component_secret)
    last = ""
    for _ in range(20):
        proc = subprocess.Popen(
            [sys.executable, __file__, "--ceiling-sender", str(server.component_port),
             CEILING_DOMAIN, str(stanzas)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env,
            start_new_session=True,
        )
        line = proc.stdout.readline()
        if line.strip() == "ready":
            return proc
        last = line.strip()
        proc.wait(5)
        time.sleep(0.5)
    raise harness.HarnessError(f"the trivial component could not log in: {last}")


def ceiling_go(proc: subprocess.Popen) -> None:
    proc.stdin.write("go\n")
    proc.stdin.flush()


def stop_ceiling_sender(proc: subprocess.Popen) -> None:
    with contextlib.suppress(Exception):
        proc.stdin.write("quit\n")
        proc.stdin.close()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        harness.stop_group(proc)


# --------------------------------------------------------------------------------------------
# Report


GOAL_AC = 0.9  # (a)/(c), at least: our component close to the server's ceiling
GOAL_US = 10.0  # our component's CPU µs per notification, at most


def median_of(results: list[Result], server: str, mode: str, label: str | None = None) -> Result | None:
    runs = [r for r in results if r.server == server and r.mode == mode and (label is None or r.label == label)]
    if not runs:
        return None
    return sorted(runs, key=lambda r: r.rate)[len(runs) // 2]


def median_value(results: list[Result], server: str, mode: str, label: str, key) -> float | None:
    values = sorted(key(r) for r in results
                    if r.server == server and r.mode == mode and r.label == label and key(r) is not None)
    return values[len(values) // 2] if values else None


def fmt_rate(r: Result | None) -> str:
    if r is None:
        return "—"
    flag = "" if r.notifications >= r.expected and not r.note else "*"
    return f"{r.rate:,.0f}{flag}"


def print_table(bench: Bench, kinds: list[str], elapsed: float) -> None:
    expected = bench.n * bench.m
    labels = [label for label, _ in bench.drivers]
    print()
    print(f"Fan-out benchmark: N={bench.n} subscribers × M={bench.m} readings = "
          f"{expected:,} notifications per run, median of {bench.runs} run(s); loopback, "
          f"{os.cpu_count()} cores shared by server, component and clients")
    if len(labels) > 1:
        print("binaries, alternated in each round: " + ", ".join(f"{label} = {path}" for label, path in bench.drivers))
    sizes = ", ".join(f"{k} {v} B" for k, v in bench.payload_bytes.items())
    others = [r.others for r in bench.results]
    if others:
        print(f"CPU taken by other processes on the machine during the runs: median {sorted(others)[len(others) // 2]:.2f}, "
              f"max {max(others):.2f} cores (of {os.cpu_count()}; more than ~0.1 disturbs the figures)")
    print(f"payload <quoalise> ({sizes}); our component: delivery_rate = {DELIVERY_RATE:,}/s "
          f"(limiter out of the way), SQLite store, one grant per subscriber")
    print()
    head = (f"{'server':<9} {'binary':<10} {'(a) ours':>10} {'(b) pubsub':>11} {'(c) ceiling':>12} {'a/b':>6} "
            f"{'a/c':>9} {'ours CPU':>11} {'server CPU µs/notif':>22} {'client CPU':>15}")
    print(head)
    print(f"{'':<9} {'':<10} {'notif/s':>10} {'notif/s':>11} {'notif/s':>12} {'':>6} {'':>9} "
          f"{'µs/notif':>11} {'a / b / c':>22} {'a / b / c':>15}")
    print(f"{'goal':<9} {'':<10} {'':>10} {'':>11} {'':>12} {'':>6} {'≥ ' + format(GOAL_AC, 'g'):>9} "
          f"{'≤ ' + format(GOAL_US, 'g'):>11} {'':>22} {'':>15}")
    print("-" * len(head))
    for kind in kinds:
        b, c = median_of(bench.results, kind, "b"), median_of(bench.results, kind, "c")
        for label in labels:
            a = median_of(bench.results, kind, "a", label)
            ab = f"{a.rate / b.rate:.2f}" if a and b and b.rate else "—"
            ac = f"{a.rate / c.rate:.2f}" if a and c and c.rate else "—"
            if a and c and c.rate:
                ac += " ok" if a.rate / c.rate >= GOAL_AC else " NO"
            us = median_value(bench.results, kind, "a", label, lambda r: r.component_cpu_us)
            ours = "—" if us is None else f"{us:.1f}" + (" ok" if us <= GOAL_US else " NO")
            srv = " / ".join(f"{x.server_cpu_us:.0f}" if x else "—" for x in (a, b, c))
            cli = " / ".join(f"{x.client_cpu:.0%}" if x else "—" for x in (a, b, c))
            print(f"{kind:<9} {label:<10} {fmt_rate(a):>10} {fmt_rate(b):>11} {fmt_rate(c):>12} {ab:>6} {ac:>9} "
                  f"{ours:>11} {srv:>22} {cli:>15}")
    print()
    print("notif/s: notifications received by all subscribers ÷ (last arrival − first arrival);")
    print("a/b: ours ÷ the server's own PubSub; a/c: ours ÷ the server's ceiling (a trivial component")
    print(f"writing pre-serialised notifications), goal ≥ {GOAL_AC:g}; ok / NO: meets the goal or not.")
    latencies = ", ".join(
        f"{kind} {label} {median_of(bench.results, kind, 'a', label).latency * 1000:.0f} ms"
        for kind in kinds
        for label in labels
        if median_of(bench.results, kind, "a", label)
    )
    if latencies:
        print(f"(a) also waits for the store: first notification after {latencies} (median run).")
    print("* = incomplete run (see the log above).")
    print("ours CPU: utime+stime of the component process over the run (until its outbox is marked")
    print(f"sent) ÷ notifications, median of the runs, goal ≤ {GOAL_US:g} µs; server CPU: the server's")
    print("processes likewise; client CPU: this process (receivers, and the (b) publisher) over")
    print("trigger → last arrival, share of one core.")
    print("(b) may beat (c): the server parses M publishes instead of N×M stanzas from a component.")
    for note in bench.notes:
        print(f"note: {note}")
    print()
    print("Reference figures, docs/architecture.md §9 (same machines):")
    for what, figure in REFERENCE:
        print(f"  {what:<46} {figure}")
    print(f"\n(whole benchmark: {elapsed:.0f} s)")


async def main_async(args) -> int:
    loop = asyncio.get_running_loop()

    def quiet_exceptions(loop, context):
        # slixmpp leaves a cancelled filter task to the garbage collector after disconnect().
        if str(context.get("message", "")).startswith("Task was destroyed but it is pending"):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(quiet_exceptions)
    bench = Bench(n=args.n, m=args.m, runs=args.runs, timeout=args.timeout or max(30.0, args.n * args.m / 500),
                  drivers=args.drivers)
    root = Path(tempfile.mkdtemp(prefix="quoalise-fanout-"))
    root.chmod(0o755)
    started = time.monotonic()
    status = 0
    try:
        for kind in args.servers.split(","):
            try:
                await bench_server(bench, kind, root)
            except harness.HarnessError as e:
                log(f"{kind}: benchmark failed: {e}")
                bench.notes.append(f"{kind}: failed ({str(e).splitlines()[0]})")
                status = 1
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print_table(bench, args.servers.split(","), time.monotonic() - started)
    return status


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--ceiling-sender":
        return ceiling_sender_main(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100, help="subscribers (default 100)")
    parser.add_argument("-m", type=int, default=300, help="readings published per run (default 300)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each of a, b, c (median; default 3)")
    parser.add_argument("--servers", default="prosody,ejabberd", help="comma-separated (default both)")
    parser.add_argument("--timeout", type=float, default=0, help="per run, s (default max(30, N×M/500))")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    parser.add_argument("--driver", action="append", metavar="LABEL=PATH",
                        help="a fanout_driver binary to measure as (a) (repeatable: alternated in each round)")
    parser.add_argument("--component", metavar="PATH", help="same as --driver current=PATH")
    args = parser.parse_args()
    specs = list(args.driver or [])
    if args.component:
        specs.append(f"current={args.component}")
    args.drivers = []
    for spec in specs or [f"current={DRIVER}"]:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            parser.error(f"--driver {spec!r}: expected LABEL=PATH")
        if not Path(path).exists():
            parser.error(f"{path} does not exist: cargo build --release --example fanout_driver")
        if label in (lbl for lbl, _ in args.drivers):
            parser.error(f"--driver label {label!r} given twice")
        args.drivers.append((label, Path(path).resolve()))
    for kind in args.servers.split(","):
        if kind not in SERVERS:
            parser.error(f"unknown server {kind!r}")
    if os.geteuid() != 0:
        parser.error("run as root: the servers run as their own system users through runuser")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.n + 256)), hard))
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
