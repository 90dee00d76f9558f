#!/usr/bin/env python3
"""Cluster fan-out benchmark: one vs two instances on a two-node ejabberd cluster, one PostgreSQL.

What it measures: the same N subscribers and M live readings, in the same session,
delivered by one instance of our component or by two instances sharing one PostgreSQL store:
notifications/s, each instance's CPU per notification it delivered, and the servers' CPU per
notification. The pieces are those of `scripts/bench_fanout.py` (imported): its raw c2s
receivers, its `fanout_driver` wrapper and configuration, its /proc CPU accounting.

How:

- a real two-node ejabberd 23.01 cluster on loopback (`quoalise_testkit.cluster.EjabberdCluster`,
  the e2e tests' template: c2s and component listeners with `shaper: none`, no
  `max_fsm_queue`, so no shaper is what is measured), nodes A and B;
- a throwaway PostgreSQL (`harness.PgCluster`), one database: the store of both instances;
- N subscriber accounts (registered a few at a time), half logged in on node A, half on node
  B (one c2s session each), each subscribed once to the node `consumption/power/active/instant`
  of 99999000000001@quoalise.localhost (while only instance a runs: the store keeps the
  subscriptions);
- instance a: `fanout_driver` (the real component, release build) connected to node A's
  component port; instance b: the same binary and configuration connected to node B's; both
  with `[cluster] instance = "a"` / `"b"` and `[web] enabled = true` (each instance's
  `quoalise_notifications_sent_total` from its /metrics is how many notifications it
  delivered);
- mode "one": only a runs (b quit); mode "two": both run. The modes alternate run by run
  (one, two, two, one, one, two, …), --runs of each, so that other processes' load weighs on
  both alike; before each run every instance must be idle (no arrival, no CPU for 1 s).
- In each run a publishes M live batches of one reading (`go` on its stdin); a stores each
  publication once; the instances deliver it to the subscriptions each one claims (PostgreSQL
  `FOR UPDATE SKIP LOCKED`; b hears of a's publications through the store's `NOTIFY` feed).
  The run waits for the N×M notifications counted by the receivers (or its timeout), then 1 s
  more, and reads: notifications/s (first to last arrival), each instance's CPU (utime+stime
  from /proc) and notifications delivered (/metrics delta), both ejabberd nodes' CPU (their
  process groups), PostgreSQL's CPU (the postmaster and its backends).

On this 2-core machine, both instances, both ejabberd nodes, PostgreSQL and the receivers share
the same 2 cores: "two" cannot be faster than "one", and the comparison shows the overhead of
sharing the work (claims with SKIP LOCKED, the NOTIFY feed, two XEP-0114 links), not a speed-up.
The report therefore ends with a projection from the measured per-notification costs: with c µs
of component CPU and e µs of ejabberd CPU per notification, N machines each giving one core to
an instance and K cores to an ejabberd node feed about N × min(1e6/c, K × 1e6/e)
notifications/s, as long as the shared PostgreSQL (p µs per notification) keeps up.

Usage: .venv/bin/python scripts/bench_cluster.py [-n 100] [-m 300] [--runs 3]
           [--driver PATH] [--timeout S] [--keep]
Run as root (ejabberd and PostgreSQL run as their own system users through runuser), like
tests/e2e. Needs a release `fanout_driver` built from this checkout's sources, which know
`[cluster]` (`cargo build --release --example fanout_driver`); --driver defaults to
target/release/examples/fanout_driver.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_fanout as fan  # noqa: E402
from bench_fanout import harness  # noqa: E402
from quoalise_testkit.cluster import EjabberdCluster  # noqa: E402
from quoalise_testkit.instances import metric  # noqa: E402

TAKEOVER = "30s"
SENT_METRIC = "quoalise_notifications_sent_total "
MODES = ("one", "two")


def log(msg: str) -> None:
    fan.log(msg)


# --------------------------------------------------------------------------------------------
# CPU of PostgreSQL: the postmaster and its children (backends, background workers)


def pg_cpu(postmaster: int) -> float:
    """utime + stime of the postmaster and its live children, in seconds (a backend that
    exited during the run takes its CPU with it: the instances keep their pool connections)."""
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = fan._stat_fields(entry)
            if fields is not None and (int(entry) == postmaster or int(fields[1]) == postmaster):
                total += int(fields[11]) + int(fields[12])
    return total / fan.CLK_TCK


def postmaster_pid(pg: harness.PgCluster) -> int:
    return int((pg.data / "postmaster.pid").read_text().splitlines()[0])


# --------------------------------------------------------------------------------------------
# Instances


def instance_config(node: harness.Ejabberd, workdir: Path, users: list[str], store_url: str,
                    name: str) -> tuple[str, int]:
    """bench_fanout's driver configuration for `node` (delivery limiter out of the way, one demo
    meter, one grant per subscriber) on the shared PostgreSQL store, with /metrics on and this
    instance's `[cluster]` name; and its web port."""
    text = fan.driver_config(node, workdir, users)
    text, n = re.subn(r'(?m)^url = "sqlite://[^"]*"$', f'url = "{store_url}"', text)
    if n != 1:
        raise harness.HarnessError("driver_config: no [store] url line to replace")
    text, n = re.subn(r"(?m)^\[web\]$", "[web]\nenabled = true", text)
    port = re.search(r'(?m)^bind = "127\.0\.0\.1:(\d+)"$', text)
    if n != 1 or port is None:
        raise harness.HarnessError("driver_config: no [web] section with a bind address")
    text += f'\n[cluster]\ninstance = "{name}"\ntakeover = "{TAKEOVER}"\n'
    return text, int(port.group(1))


class Instance:
    """One `fanout_driver` of the cluster: its Driver, web port, and the number of times it
    was started (the log accumulates the lines of every start)."""

    def __init__(self, name: str, node: harness.Ejabberd, workdir: Path, users: list[str],
                 store_url: str, binary: Path):
        self.name = name
        directory = workdir / f"instance-{name}"
        directory.mkdir(parents=True)
        text, self.web_port = instance_config(node, directory, users, store_url, name)
        self.driver = fan.Driver(directory, text, binary=binary)

    @property
    def running(self) -> bool:
        return self.driver.proc is not None and self.driver.proc.poll() is None

    @property
    def pid(self) -> int:
        return self.driver.proc.pid

    async def start(self) -> None:
        if self.running:
            return
        self.driver.start()
        await asyncio.to_thread(self.driver.wait_established, self.driver.starts, 60.0)

    async def quit(self) -> None:
        if self.running:
            await asyncio.to_thread(self.driver.quit)

    def sent(self) -> int:
        value = metric(self.web_port, SENT_METRIC)
        if value is None:
            raise harness.HarnessError(f"instance {self.name}: no {SENT_METRIC.strip()} in /metrics")
        return int(float(value))

    def cpu(self) -> float:
        return fan.proc_cpu(self.pid) if self.running else 0.0


async def settle(tally: fan.Tally, instances: list[Instance], quiet: float = 1.0,
                 limit: float = 20.0) -> bool:
    """Waits until no notification arrived and no running instance's CPU moved for `quiet` s
    (a start's demo backfill, the last run's stragglers), at most `limit` s; whether it did."""
    tally.arm(0)
    deadline = time.monotonic() + limit
    last = None
    while time.monotonic() < deadline:
        now = (tally.total, tuple(i.cpu() for i in instances))
        if now == last:
            return True
        last = now
        await asyncio.sleep(quiet)
    return False


# --------------------------------------------------------------------------------------------
# Runs


@dataclass
class Run:
    mode: str
    index: int
    notifications: int
    expected: int
    rate: float  # notifications/s, first to last arrival
    latency: float  # `go` to first arrival, s
    delivered: dict[str, int]  # per instance, from /metrics
    cpu: dict[str, float]  # per instance, s
    ejabberd_cpu: float  # both nodes, s
    pg_cpu: float  # s
    client_cpu: float  # this process (receivers), share of one core over go → last arrival
    others: float  # other processes' CPU during the run, cores
    note: str = ""

    def us_per_delivered(self, name: str) -> float | None:
        n = self.delivered.get(name, 0)
        return self.cpu[name] / n * 1e6 if n else None

    @property
    def component_us(self) -> float:
        return sum(self.cpu.values()) / max(self.notifications, 1) * 1e6

    @property
    def ejabberd_us(self) -> float:
        return self.ejabberd_cpu / max(self.notifications, 1) * 1e6

    @property
    def pg_us(self) -> float:
        return self.pg_cpu / max(self.notifications, 1) * 1e6


@dataclass
class Bench:
    n: int
    m: int
    runs: int
    timeout: float
    driver: Path
    results: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def mode_of(index: int) -> str:
    """one, two, two, one, one, two, two, one, …"""
    return "one" if index % 4 in (0, 3) else "two"


async def one_run(bench: Bench, index: int, mode: str, cluster: EjabberdCluster, pg_pid: int,
                  instances: dict[str, Instance], receivers: list[fan.Receiver],
                  tally: fan.Tally) -> Run:
    a = instances["a"]
    running = [i for i in instances.values() if i.running]
    expected = bench.n * bench.m
    for r in receivers:
        r.count = 0
    tally.arm(expected)

    def nodes_cpu() -> float:
        return sum(fan.group_cpu(node.proc.pid) for node in cluster.nodes)

    def ours() -> float:
        return nodes_cpu() + pg_cpu(pg_pid) + fan.self_cpu() + sum(i.cpu() for i in running)

    sent0 = {i.name: i.sent() for i in running}
    cpu0 = {i.name: i.cpu() for i in running}
    nodes0, pg0, self0 = nodes_cpu(), pg_cpu(pg_pid), fan.self_cpu()
    busy0, ours0 = fan.system_busy(), ours()
    first_time = int(time.time()) - 7 * 86400 + index * bench.m  # distinct readings in each run
    t0 = time.perf_counter()
    a.driver.send(f"go {bench.m} {fan.USAGE_POINT} {fan.SERIES} {first_time}")
    note = ""
    try:
        await asyncio.wait_for(tally.done.wait(), bench.timeout)
    except asyncio.TimeoutError:
        note = f"TIMEOUT after {bench.timeout:.0f} s"
    self1 = fan.self_cpu()
    arrived = tally.total
    first, last = tally.first or t0, tally.last or t0
    await asyncio.sleep(1.0)  # the instances mark their cursors; stragglers arrive
    cpu1 = {i.name: i.cpu() for i in running}
    nodes1, pg1 = nodes_cpu(), pg_cpu(pg_pid)
    busy1, ours1, t1 = fan.system_busy(), ours(), time.perf_counter()
    sent1 = {i.name: i.sent() for i in running}
    answer = await asyncio.wait_for(asyncio.to_thread(a.driver.proc.stdout.readline), 30)
    if not answer.startswith("sent "):
        raise harness.HarnessError(f"instance a answered {answer!r}\n{a.driver.tail()}")
    if any(r.closed for r in receivers):
        note = (note + "; " if note else "") + f"{sum(r.closed for r in receivers)} receiver(s) disconnected"
    if tally.total > arrived:
        note = (note + "; " if note else "") + f"+{tally.total - arrived} after the expected count"
    return Run(
        mode=mode,
        index=index,
        notifications=arrived,
        expected=expected,
        rate=arrived / max(last - first, 1e-9) if arrived > 1 else 0.0,
        latency=first - t0,
        delivered={name: sent1[name] - sent0[name] for name in sent0},
        cpu={name: cpu1[name] - cpu0[name] for name in cpu0},
        ejabberd_cpu=nodes1 - nodes0,
        pg_cpu=pg1 - pg0,
        client_cpu=(self1 - self0) / max(last - t0, 1e-9),
        others=max(0.0, (busy1 - busy0) - (ours1 - ours0)) / (t1 - t0),
        note=note,
    )


def report_run(r: Run) -> None:
    per = ", ".join(
        f"{name} delivered {r.delivered[name]} with {r.cpu[name] * 1000:.0f} ms CPU"
        + (f" ({r.us_per_delivered(name):.1f} µs/notif)" if r.delivered[name] else "")
        for name in sorted(r.delivered)
    )
    log(f"  run {r.index + 1} ({r.mode}): {r.notifications}/{r.expected} notifications, {r.rate:,.0f}/s, "
        f"first after {r.latency * 1000:.0f} ms; {per}; component {r.component_us:.1f}, ejabberd "
        f"{r.ejabberd_us:.1f}, PostgreSQL {r.pg_us:.1f} µs CPU/notif; client {r.client_cpu:.0%} of a "
        f"core; other processes {r.others:.2f} cores{' — ' + r.note if r.note else ''}")


def register(node: harness.Ejabberd, users: list[str]) -> None:
    # Each ejabberdctl call is a whole Erlang VM start: a few at a time.
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda u: node.create_account(u, harness.PASSWORD), users))


async def bench_cluster(bench: Bench, root: Path) -> None:
    users = fan.subscriber_names(bench.n)
    cluster = EjabberdCluster(root / "cluster")
    pg = harness.PgCluster()
    instances: dict[str, Instance] = {}
    receivers: list[fan.Receiver] = []
    try:
        log("starting PostgreSQL and the two-node ejabberd cluster")
        # Side by side; both finish (or fail) before anything is stopped.
        started = await asyncio.gather(asyncio.to_thread(pg.start), asyncio.to_thread(cluster.start),
                                       return_exceptions=True)
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        store_url = pg.create_database("bench_cluster")
        pg_pid = postmaster_pid(pg)
        t = time.monotonic()
        await asyncio.to_thread(register, cluster.a, users)
        log(f"{bench.n} accounts registered in {time.monotonic() - t:.1f} s")

        for name, node in (("a", cluster.a), ("b", cluster.b)):
            instances[name] = Instance(name, node, root, users, store_url, bench.driver)
        a, b = instances["a"], instances["b"]
        await a.start()
        await asyncio.to_thread(a.driver.wait_for_count, "demo history sent", 1, 60.0)

        tally = fan.Tally()
        half = (bench.n + 1) // 2
        nodes = [cluster.a if k < half else cluster.b for k in range(bench.n)]
        receivers = [fan.Receiver(u, node.host, tally) for u, node in zip(users, nodes)]
        t = time.monotonic()
        await fan.gather_bounded((r.login(node.c2s_port) for r, node in zip(receivers, nodes)), limit=20)
        await fan.gather_bounded((r.subscribe(fan.UP_JID, fan.SERIES) for r in receivers), limit=20)
        log(f"{bench.n} subscribers ({half} on node A, {bench.n - half} on node B) logged in and "
            f"subscribed in {time.monotonic() - t:.1f} s")
        for r in receivers:
            r.start_counting()

        for index in range(2 * bench.runs):
            mode = mode_of(index)
            if mode == "one":
                await b.quit()
            else:
                await b.start()
            if not await settle(tally, [a, b]):
                bench.notes.append(f"run {index + 1}: the instances were not idle after 20 s")
            run = await one_run(bench, index, mode, cluster, pg_pid, instances, receivers, tally)
            report_run(run)
            bench.results.append(run)
    finally:
        for r in receivers:
            await r.close()
        for instance in instances.values():
            with contextlib.suppress(Exception):
                await instance.quit()
        await asyncio.to_thread(cluster.stop)
        await asyncio.to_thread(pg.stop)


# --------------------------------------------------------------------------------------------
# Report


def median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def print_report(bench: Bench, elapsed: float) -> None:
    expected = bench.n * bench.m
    cores = os.cpu_count()
    print()
    print(f"Cluster fan-out benchmark: N={bench.n} subscribers (half on each ejabberd node) × M={bench.m} "
          f"readings = {expected:,} notifications per run, median of {bench.runs} run(s) per mode; "
          f"two-node ejabberd 23.01 cluster, one PostgreSQL, loopback, {cores} cores shared by everything")
    print(f"driver: {bench.driver}")
    others = [r.others for r in bench.results]
    if others:
        print(f"CPU taken by other processes during the runs: median {statistics.median(others):.2f}, "
              f"max {max(others):.2f} cores (of {cores})")
    print()
    head = (f"{'mode':<5} {'notif/s':>9} {'delivered a / b':>17} {'a µs/notif':>11} {'b µs/notif':>11} "
            f"{'component':>10} {'ejabberd':>9} {'PostgreSQL':>11} {'1st notif':>10}")
    print(head)
    print(f"{'':<5} {'':>9} {'(share)':>17} {'delivered':>11} {'delivered':>11} {'µs/notif':>10} "
          f"{'µs/notif':>9} {'µs/notif':>11} {'ms':>10}")
    print("-" * len(head))
    medians: dict[str, dict[str, float | None]] = {}
    for mode in MODES:
        runs = [r for r in bench.results if r.mode == mode]
        if not runs:
            continue
        incomplete = any(r.notifications < r.expected or r.note for r in runs)
        share_a = median([r.delivered.get("a", 0) / max(sum(r.delivered.values()), 1) for r in runs])
        m = {
            "rate": median([r.rate for r in runs]),
            "a": median([r.us_per_delivered("a") for r in runs]),
            "b": median([r.us_per_delivered("b") for r in runs]),
            "component": median([r.component_us for r in runs]),
            "ejabberd": median([r.ejabberd_us for r in runs]),
            "pg": median([r.pg_us for r in runs]),
            "latency": median([r.latency * 1000 for r in runs]),
        }
        medians[mode] = m
        share = f"{share_a:.0%} / {1 - share_a:.0%}"
        print(f"{mode:<5} {fmt(m['rate'], ',.0f') + ('*' if incomplete else ''):>9} {share:>17} "
              f"{fmt(m['a']):>11} {fmt(m['b']):>11} {fmt(m['component']):>10} {fmt(m['ejabberd']):>9} "
              f"{fmt(m['pg']):>11} {fmt(m['latency'], '.0f'):>10}")
    print()
    print("notif/s: notifications received by all subscribers ÷ (last arrival − first arrival);")
    print("delivered: each instance's share of the notifications (its quoalise_notifications_sent_total);")
    print("a/b µs/notif delivered: the instance's CPU (utime+stime, `go` → 1 s after the last arrival) ÷")
    print("the notifications it delivered (a also accepts the M readings and stores each publication; b only")
    print("delivers); component, ejabberd (both nodes), PostgreSQL (postmaster and")
    print("backends): their CPU ÷ all notifications; * = incomplete run (see the log above).")
    for note in bench.notes:
        print(f"note: {note}")
    print()
    one, two = medians.get("one"), medians.get("two")
    print(f"On this {cores}-core machine both instances, both ejabberd nodes, PostgreSQL and the")
    print("receivers share the same cores: \"two\" cannot be faster than \"one\", and the difference")
    print("between the rows is the overhead of sharing the work between two instances (claims with")
    print("FOR UPDATE SKIP LOCKED in one PostgreSQL, the NOTIFY feed, two XEP-0114 links), not a")
    print("speed-up.")
    if one and two and one["component"] and two["component"]:
        print(f"Component CPU per notification: {one['component']:.1f} µs with one instance, "
              f"{two['component']:.1f} µs with two ({two['component'] / one['component'] - 1:+.0%}); "
              f"PostgreSQL {fmt(one['pg'])} → {fmt(two['pg'])} µs.")
    if two and two["component"] and two["ejabberd"]:
        c, e, p = two["component"], two["ejabberd"], two["pg"]
        print()
        print(f"Projection from the costs measured with two instances (c = {c:.1f} µs of component CPU,")
        print(f"e = {e:.1f} µs of ejabberd CPU (both nodes, half the subscribers on the other node),")
        print(f"p = {fmt(p)} µs of PostgreSQL CPU per notification): N machines, each with one core for")
        print("an instance and K cores for its ejabberd node, feed about N × min(1e6/c, K × 1e6/e)")
        print("notifications/s, as long as the one PostgreSQL keeps up (P cores: P × 1e6/p):")
        for k in (1, 2, 4):
            per_machine = min(1e6 / c, k * 1e6 / e)
            bound = "component" if 1e6 / c <= k * 1e6 / e else "ejabberd"
            figures = ", ".join(f"N={n}: {n * per_machine:,.0f}/s" for n in (1, 2, 4, 8))
            print(f"  K={k}: {per_machine:,.0f}/s per machine ({bound}-bound); {figures}")
        if p:
            pg_core = 1e6 / p
            per_k1 = min(1e6 / c, 1e6 / e)
            print(f"The one PostgreSQL is shared: at p = {p:.1f} µs a core of it carries {pg_core:,.0f}")
            print(f"notifications/s, so P cores cap the whole at P × {pg_core:,.0f}/s whatever N (with K=1 the")
            print(f"cap is reached at N ≈ {pg_core / per_k1:.1f} × P machines). p grows with notifications, not")
            print("only with readings: claims and cursor moves update a row per subscription.")
        print("With more nodes a larger share of the notifications crosses between nodes ((N−1)/N")
        print("instead of 1/2 here), so e grows somewhat; c and p are the costs with two instances")
        print("sharing the claims, and may grow with more instances claiming at once.")
    print(f"\n(whole benchmark: {elapsed:.0f} s)")


async def main_async(args) -> int:
    bench = Bench(n=args.n, m=args.m, runs=args.runs, driver=args.driver,
                  timeout=args.timeout or max(30.0, args.n * args.m / 500))
    root = Path(tempfile.mkdtemp(prefix="quoalise-bench-cluster-"))
    root.chmod(0o755)
    started = time.monotonic()
    status = 0
    try:
        await bench_cluster(bench, root)
    except harness.HarnessError as e:
        log(f"benchmark failed: {e}")
        bench.notes.append(f"failed ({str(e).splitlines()[0]})")
        status = 1
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print_report(bench, time.monotonic() - started)
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100, help="subscribers (default 100)")
    parser.add_argument("-m", type=int, default=300, help="readings published per run (default 300)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each mode (median; default 3)")
    parser.add_argument("--timeout", type=float, default=0, help="per run, s (default max(30, N×M/500))")
    parser.add_argument("--driver", type=Path, default=None,
                        help=f"fanout_driver binary (default {fan.DRIVER})")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()
    if args.driver is None:
        args.driver = fan.DRIVER
    if not args.driver.exists():
        parser.error(f"{args.driver} does not exist: cargo build --release --example fanout_driver")
    args.driver = args.driver.resolve()
    if args.n < 2 or args.m < 1 or args.runs < 1:
        parser.error("need -n ≥ 2 (one subscriber per node), -m ≥ 1, --runs ≥ 1")
    if os.geteuid() != 0:
        parser.error("run as root: ejabberd and PostgreSQL run as their own system users through runuser")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.n + 256)), hard))
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
