"""The HTTP SenML ingest source, end to end.

Real Prosody, the real component with two `http` sources, `curl` posting SenML (JSON, and CBOR
encoded by the `cbor2` library), and slixmpp clients: an owner subscribed to the device's series
receives each accepted pack as a PubSub notification within 100 ms of curl's answer, and
`get_history` returns it; every refusal comes with its status and problem document; a retried
pack publishes once; a pack with one bad record among 100 stores none. And a retry reaching
two instances on one PostgreSQL at the same moment is published once.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import cbor2
import pytest

from quoalise_testkit.commands import history_fields, run_command
from quoalise_testkit.harness import (
    Component, component_config, connected, free_port, start_component, start_server, wait_until,
)
from quoalise_testkit.instances import healthz
from quoalise_testkit.live import Inbox
from quoalise_testkit.xmpp import DOMAIN, expect_error

POWER = "production/power/active/instant"
ENERGY = "production/energy/active/index"
PV_TOKEN = "pv-roof-e2e-token-0123456789"
SLOW_TOKEN = "slow-e2e-token-0123456789"
SOURCE = f"home@{DOMAIN}"
PV = f"pv-roof@{DOMAIN}"
NOTIFY_WITHIN = 0.1
T = 10


def sources(token_file: Path) -> str:
    return f"""\
[[source]]
type = "http"
id = "home"
owners = ["alice@localhost"]
requests_per_second = 100
requests_burst = 200
[[source.device]]
id = "pv-roof"
name = "Roof solar inverter"
token_file = "{token_file}"
series = ["{POWER}", "{ENERGY}"]

[[source]]
type = "http"
id = "garage"
owners = ["alice@localhost"]
requests_per_second = 1
requests_burst = 1
[[source.device]]
id = "slow"
token = "{SLOW_TOKEN}"
series = ["{POWER}"]
"""


def urn(series: str, device: str = "pv-roof") -> str:
    return f"urn:dev:http:{device}_{series}"


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Curl:
    """Runs curl against the component's web port without blocking the event loop (slixmpp
    keeps receiving meanwhile)."""

    def __init__(self, port: int, workdir: Path):
        self.base = f"http://127.0.0.1:{port}"
        self.dir = workdir
        self._n = 0

    async def post(self, path: str, body: bytes, content_type: str, token: str | None = PV_TOKEN,
                   extra: tuple[str, ...] = ()) -> tuple[int, dict[str, str], dict | None, float]:
        """Status, headers (lowercase names), problem document (or None) and time.monotonic()
        when curl returned."""
        self._n += 1
        body_file = self.dir / f"body-{self._n}"
        body_file.write_bytes(body)
        headers_file = self.dir / f"headers-{self._n}"
        args = ["curl", "-sS", "-o", "-", "-D", str(headers_file), "-w", "\n%{http_code}",
                "-X", "POST", "-H", f"Content-Type: {content_type}",
                "--data-binary", f"@{body_file}", *extra, f"{self.base}{path}"]
        if token is not None:
            args[1:1] = ["-H", f"Authorization: Bearer {token}"]
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        answered = time.monotonic()
        assert proc.returncode == 0, err.decode()
        text, _, code = out.decode().rpartition("\n")
        headers = {}
        for line in headers_file.read_text().splitlines()[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        problem = None
        if text:
            assert headers.get("content-type") == "application/problem+json", (headers, text)
            problem = json.loads(text)
            assert problem["status"] == int(code), problem
        return int(code), headers, problem, answered


def power_pack(start: int, values: list[float]) -> list[dict]:
    records = [{"bn": "urn:dev:mac:0024befffe804ff1_", "bt": start, "bu": "W",
                "n": POWER, "v": values[0]}]
    records += [{"n": POWER, "t": 60 * i, "v": v} for i, v in enumerate(values[1:], 1)]
    return records


async def wait_for(predicate, timeout: float, what: str, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(interval)


async def history(client, series: str, start: float, end: float) -> list[tuple[float, float]]:
    answer = await run_command(client, SOURCE, "get_history",
                               history_fields(urn(series), iso(start), iso(end)))
    return [(r.time, r.value) for r in answer.records]


@pytest.mark.timeout(120)
def test_ingest(workspace):
    asyncio.run(scenario(workspace))


async def scenario(workspace) -> None:
    server = start_server("prosody", workspace.mkdir("prosody"))
    comp_dir = workspace.mkdir("component")
    token_file = comp_dir / "pv-roof.token"
    token_file.write_text(PV_TOKEN + "\n")
    web_port = free_port()
    component = None
    try:
        component = start_component(
            server, comp_dir, alice_sees_all=False, web_port=web_port,
            sources=sources(token_file), extra_web="max_body = 65536",
        )
        curl = Curl(web_port, workspace.mkdir("curl"))
        async with connected(server, "alice", presence=True) as alice, \
                connected(server, "bob", presence=True) as bob:
            # The devices are declared once the sources' tasks run.
            async def declared():
                try:
                    await alice.plugin["xep_0030"].get_info(jid=PV, timeout=T)
                    return True
                except Exception:
                    return False
            deadline = time.monotonic() + 15
            while not await declared():
                assert time.monotonic() < deadline, "pv-roof never declared"
                await asyncio.sleep(0.2)
            inbox = Inbox(alice)
            for node in (POWER, ENERGY):
                await alice.plugin["xep_0060"].subscribe(PV, node, timeout=T)
            # Bob owns nothing: no subscription.
            await expect_error(bob.plugin["xep_0060"].subscribe(PV, POWER, timeout=T))

            # JSON: 100 records, stored and notified within 100 ms of the answer.
            now = int(time.time())
            start = now - 7200
            values = [1000.0 + i for i in range(100)]
            body = json.dumps(power_pack(start, values)).encode()
            since = time.monotonic()
            status, _, problem, answered = await curl.post(
                "/ingest/home/pv-roof", body, "application/senml+json")
            assert status == 204, problem
            got = await wait_for(lambda: [n for n in inbox.live(since) if n.node == POWER], 5,
                                 "the JSON pack notified")
            assert got[0].received - answered < NOTIFY_WITHIN, \
                f"notified {got[0].received - answered:.3f} s after the answer"
            assert [r.value for r in got[0].records] == values
            assert got[0].records[0].name == urn(POWER) and got[0].records[0].time == start
            assert got[0].sender == PV

            # CBOR, encoded by cbor2 with RFC 8428's integer labels, Wh with bver 26.
            cbor = cbor2.dumps([
                {-2: "urn:dev:mac:0024befffe804ff1_", -3: now - 120, -1: 26, 0: ENERGY, 1: "Wh", 2: 5000.5},
                {0: ENERGY, 6: 60, 2: 5001},
            ])
            since = time.monotonic()
            status, _, problem, answered = await curl.post(
                "/ingest/home/pv-roof", cbor, "application/senml+cbor")
            assert status == 204, problem
            got = await wait_for(lambda: [n for n in inbox.live(since) if n.node == ENERGY], 5,
                                 "the CBOR pack notified")
            assert got[0].received - answered < NOTIFY_WITHIN
            assert [(r.time, r.value, r.unit) for r in got[0].records] == \
                [(now - 120, 5000.5, "Wh"), (now - 60, 5001.0, "Wh")]

            # History returns both packs.
            assert await history(alice, POWER, start, now) == \
                [(start + 60 * i, v) for i, v in enumerate(values)]
            assert await history(alice, ENERGY, now - 600, now + 60) == \
                [(now - 120, 5000.5), (now - 60, 5001.0)]

            # A retried pack (the gateway timed out) publishes nothing twice.
            retry = json.dumps(power_pack(now - 30, [7.0, 8.0])).encode()
            since = time.monotonic()
            for _ in range(2):
                status, _, problem, _ = await curl.post("/ingest/home/pv-roof", retry, "application/senml+json")
                assert status == 204, problem
            # A later pack is the barrier: everything before it was published.
            status, _, _, _ = await curl.post(
                "/ingest/home/pv-roof", json.dumps([{"n": POWER, "v": 9.0, "u": "W"}]).encode(),
                "application/senml+json")
            assert status == 204
            await wait_for(lambda: [n for n in inbox.live(since) if 9.0 in [r.value for r in n.records]],
                           5, "the barrier notified")
            published = [[r.value for r in n.records] for n in inbox.live(since) if n.node == POWER]
            assert published == [[7.0, 8.0], [9.0]], published

            # One bad record among 100: 400 naming it, and none of the 100 stored.
            bad_start = now - 20000
            bad = power_pack(bad_start, [float(i) for i in range(100)])
            bad[42]["vs"] = "overload"
            del bad[42]["v"]
            since = time.monotonic()
            status, _, problem, _ = await curl.post(
                "/ingest/home/pv-roof", json.dumps(bad).encode(), "application/senml+json")
            assert status == 400
            assert (problem["record"], problem["field"]) == (42, "vs"), problem
            assert "numeric" in problem["detail"], problem
            assert await history(alice, POWER, bad_start, bad_start + 6000) == []

            # Every refusal, its status and its message.
            pack = json.dumps(power_pack(now - 5, [1.0])).encode()
            cases = [
                ("/ingest/home/pv-roof", pack, "application/senml+json", None, 401, "Bearer"),
                ("/ingest/home/pv-roof", pack, "application/senml+json", "not-the-token-0123456789", 401, "wrong token"),
                ("/ingest/home/pv-roof", pack, "application/senml+json", SLOW_TOKEN, 403, "another device"),
                ("/ingest/home/slow", pack, "application/senml+json", SLOW_TOKEN, 403, "not a device of source home"),
                ("/ingest/home/pv-roof", pack, "application/json", PV_TOKEN, 415, "application/senml+json"),
                ("/ingest/home/pv-roof", b"[" + b"{}," * 30000 + b"{}]", "application/senml+json", PV_TOKEN,
                 413, "max_body"),
                ("/ingest/home/pv-roof", json.dumps([{"n": POWER, "v": 1, "t": now + 3600}]).encode(),
                 "application/senml+json", PV_TOKEN, 400, "ahead of our clock"),
                ("/ingest/home/pv-roof", json.dumps([{"n": POWER, "v": 1, "t": now - 4 * 365 * 86400}]).encode(),
                 "application/senml+json", PV_TOKEN, 400, "older than the retention"),
                ("/ingest/home/pv-roof", json.dumps([{"n": POWER, "v": 1, "u": "kW"}]).encode(),
                 "application/senml+json", PV_TOKEN, 400, "is in \"W\""),
                ("/ingest/home/pv-roof", json.dumps([{"n": "temperature/raw", "v": 1}]).encode(),
                 "application/senml+json", PV_TOKEN, 400, "none of the series"),
                ("/ingest/home/pv-roof", b"\xff\x00", "application/senml+cbor", PV_TOKEN, 400, "not CBOR"),
            ]
            for path, body, content_type, token, want, says in cases:
                status, headers, problem, _ = await curl.post(path, body, content_type, token)
                assert status == want, (path, content_type, token, status, problem)
                assert says in problem["detail"], (want, problem)
                if want == 401:
                    assert headers["www-authenticate"].startswith("Bearer"), headers
            # The rate of the garage's device: 1 per second, then 429 with Retry-After.
            answers = []
            for _ in range(3):
                status, headers, problem, _ = await curl.post(
                    "/ingest/garage/slow", pack, "application/senml+json", SLOW_TOKEN)
                answers.append((status, headers.get("retry-after"), problem))
            assert answers[0][0] == 204, answers
            limited = [a for a in answers[1:] if a[0] == 429]
            assert limited, answers
            assert limited[0][1] == "1", limited
            assert "requests per second" in limited[0][2]["detail"]

            # /metrics counts by device and status; the tokens appear nowhere.
            proc = await asyncio.create_subprocess_exec(
                "curl", "-sS", f"{curl.base}/metrics", stdout=asyncio.subprocess.PIPE)
            metrics = (await proc.communicate())[0].decode()
            assert 'quoalise_ingest_requests_total{device="home/pv-roof",status="204"} 5' in metrics, metrics
            assert 'quoalise_ingest_requests_total{device="garage/slow",status="429"}' in metrics
            log = component.log()
            for token in (PV_TOKEN, SLOW_TOKEN):
                assert token not in metrics and token not in log
    finally:
        if component is not None:
            print("--- component log (tail)\n" + component.tail(40))
            component.stop()
        server.stop()


async def wait_declared(client) -> None:
    """Until the device's usage point answers disco#info (its source's task declared it)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            await client.plugin["xep_0030"].get_info(jid=PV, timeout=T)
            return
        except Exception:
            assert time.monotonic() < deadline, "pv-roof never declared"
            await asyncio.sleep(0.2)


def serving(port: int) -> bool:
    """Whether the instance's web server answers (before it has an XMPP session too)."""
    try:
        return isinstance(healthz(port), dict)
    except OSError:
        return False


@pytest.mark.servers("prosody")
@pytest.mark.timeout(180)
async def test_a_retry_reaching_two_instances_is_published_once(pg_cluster, fresh_server, workspace):
    """A gateway that timed out may retry through another instance (behind one load balancer)
    while the first still writes: the same pack reaches both at once, both answer 204, and every
    reading is notified exactly once. Prosody takes one instance's connection (the other stands
    by), but both serve HTTP and publish; the connected one delivers."""
    server = fresh_server("prosody")
    url = pg_cluster.create_database("quoalise_ingest_retry")
    token_file = workspace.mkdir("tokens") / "pv-roof.token"
    token_file.write_text(PV_TOKEN + "\n")
    ports = {"a": free_port(), "b": free_port()}
    instances = {}
    for name, port in ports.items():
        workdir = workspace.mkdir(f"instance-{name}")
        text = component_config(server, workdir, store_url=url, web_port=port,
                                sources=sources(token_file), alice_sees_all=False,
                                reconnect_max_delay="1s")
        instances[name] = Component(workdir, text + f'\n[cluster]\ninstance = "{name}"\n')
    try:
        instances["a"].start()
        instances["a"].wait_established()
        instances["b"].start()
        assert wait_until(lambda: serving(ports["b"]), 20), instances["b"].tail()
        async with connected(server, "alice", presence=True) as alice:
            await wait_declared(alice)
            inbox = Inbox(alice)
            await alice.plugin["xep_0060"].subscribe(PV, POWER, timeout=T)
            curls = [Curl(port, workspace.mkdir(f"curl-{name}")) for name, port in ports.items()]
            now = int(time.time())
            since = time.monotonic()
            sent = {}
            for k in range(10):
                start = now - 86400 + 6000 * k
                values = [float(1000 * k + i) for i in range(100)]
                body = json.dumps(power_pack(start, values)).encode()
                answers = await asyncio.gather(
                    *(c.post("/ingest/home/pv-roof", body, "application/senml+json") for c in curls))
                assert [a[0] for a in answers] == [204, 204], [a[2] for a in answers]
                sent.update({start + 60 * i: v for i, v in enumerate(values)})
            # A later pack is the barrier: every publication before it was delivered first.
            status, _, problem, _ = await curls[0].post(
                "/ingest/home/pv-roof", json.dumps([{"n": POWER, "v": -1.0, "u": "W"}]).encode(),
                "application/senml+json")
            assert status == 204, problem
            await wait_for(lambda: [n for n in inbox.live(since) if -1.0 in [r.value for r in n.records]],
                           10, "the barrier notified")
            received = [(r.time, r.value) for n in inbox.live(since) if n.node == POWER
                        for r in n.records if r.value != -1.0]
            times = [t for t, _ in received]
            assert len(times) == len(set(times)), "a reading was notified twice"
            assert dict(received) == sent
            assert await history(alice, POWER, now - 86400, now - 86400 + 60000) == sorted(sent.items())
    finally:
        for component in instances.values():
            print(f"--- {component.dir} log (tail)\n" + component.tail(30))
            component.stop()
