"""Tools for hostile input: raw stanzas sent without waiting, their replies counted by id, and a
second user who pings the component from her own thread all along.

Used by test_hostile.py and scripts/bench_abuse.py. Hostile stanzas are sent as raw XML
(slixmpp `send_raw`), since that is the only way to send what a well-behaved library would not
(a 30,000-level stanza, 5,000 requests without waiting for one answer); replies are still read
and parsed by slixmpp.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher.base import MatcherBase

from .harness import XmppServer, connected
from .xmpp import DOMAIN, NS_INFO

NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NS_COMMANDS = "http://jabber.org/protocol/commands"

# What a refused request may get instead of its result ([limits] in component.toml.example).
# Too many of this requester's requests at once, or over its rate: the same condition, which
# every client knows (slixmpp lacks policy-violation); the text says which limit.
LIMIT = ("wait", "resource-constraint")
LIMIT_ERRORS = {LIMIT}
# XEP-0060's answer to one subscription too many (with <too-many-subscriptions/>).
TOO_MANY_SUBSCRIPTIONS = ("wait", "policy-violation")


# --------------------------------------------------------------------------------------------
# Raw stanzas


def disco_info(iq_id: str, to: str = DOMAIN, node: str | None = None, extra: str = "") -> str:
    node_attr = "" if node is None else f" node={quoteattr(node)}"
    return f"<iq type='get' id='{iq_id}' to='{to}'><query xmlns='{NS_INFO}'{node_attr}{extra}/></iq>"


def execute(iq_id: str, to: str, node: str) -> str:
    """XEP-0050 `execute` with no form: the first stage of a multi-stage command."""
    return (
        f"<iq type='set' id='{iq_id}' to='{to}'>"
        f"<command xmlns='{NS_COMMANDS}' node='{node}' action='execute'/></iq>"
    )


def subscribe(iq_id: str, to: str, node: str, jid: str) -> str:
    return (
        f"<iq type='set' id='{iq_id}' to='{to}'><pubsub xmlns='{NS_PUBSUB}'>"
        f"<subscribe node='{node}' jid='{jid}'/></pubsub></iq>"
    )


def nested(depth: int, name: str = "a") -> str:
    """`depth` elements, each inside the previous one."""
    return f"<{name}>" * depth + f"</{name}>" * depth


def send_pipelined(client, stanzas: list[str], chunk: int = 100) -> None:
    """Writes every stanza at once, `chunk` stanzas per write, without waiting for anything."""
    for i in range(0, len(stanzas), chunk):
        client.send_raw("".join(stanzas[i:i + chunk]))


# --------------------------------------------------------------------------------------------
# Replies


class _IqIdPrefix(MatcherBase):
    def match(self, stanza) -> bool:
        return stanza.name == "iq" and stanza["type"] in ("result", "error") and \
            (stanza["id"] or "").startswith(self._criteria)


def outcome(stanza) -> tuple[str, str]:
    """("result", "") or (error type, defined condition) of a reply. The condition is read from
    the XML: slixmpp's `stanza["error"]["condition"]` does not know RFC 6120's
    policy-violation and gives "" for it."""
    if stanza["type"] == "result":
        return ("result", "")
    error = stanza.xml.find(f"{{{stanza.namespace}}}error")
    if error is None:
        return (stanza["type"], "")
    conditions = [
        child.tag.split("}", 1)[1] for child in error
        if child.tag.startswith(f"{{{NS_STANZAS}}}") and child.tag != f"{{{NS_STANZAS}}}text"
    ]
    return (error.get("type", ""), conditions[0] if len(conditions) == 1 else " ".join(conditions))


def describe(stanza, limit: int = 300) -> str:
    """The start of a stanza's XML, for messages; a stanza echoing a deep payload is too deep
    for slixmpp's recursive serializer, so then only its outcome is given."""
    try:
        return str(stanza)[:limit]
    except RecursionError:
        return f"<{stanza.name} type={stanza['type']!r} id={stanza['id']!r} …> (too deep to print)"


def app_condition(stanza, namespace: str) -> str | None:
    """The local name of the first child of <error/> in `namespace`, if any."""
    error = stanza.xml.find(f"{{{stanza.namespace}}}error")
    for child in error if error is not None else []:
        if child.tag.startswith(f"{{{namespace}}}"):
            return child.tag.split("}", 1)[1]
    return None


class Replies:
    """Every iq result/error a client receives whose id starts with `prefix`, by id, with the
    time it arrived; also the stream error and the end of the stream, if the server sends
    them (servers close the stream of a client that sends what they refuse)."""

    def __init__(self, client, prefix: str):
        self.client = client
        self.prefix = prefix
        self.by_id: dict[str, object] = {}
        self.arrived: dict[str, float] = {}
        self.duplicates: list[str] = []
        self.stream_errors: list[str] = []
        self.closed = asyncio.Event()
        self.last_arrival = time.monotonic()
        self._name = f"replies {prefix}"
        client.register_handler(Callback(self._name, _IqIdPrefix(prefix), self._on_reply))
        client.add_event_handler("stream_error", self._on_stream_error)
        client.add_event_handler("disconnected", self._on_disconnected)

    def _on_reply(self, stanza) -> None:
        now = time.monotonic()
        self.last_arrival = now
        if stanza["id"] in self.by_id:
            self.duplicates.append(stanza["id"])
            return
        self.by_id[stanza["id"]] = stanza
        self.arrived[stanza["id"]] = now

    def _on_stream_error(self, error) -> None:
        self.stream_errors.append(error["condition"])

    def _on_disconnected(self, _reason) -> None:
        self.closed.set()

    def close(self) -> None:
        self.client.remove_handler(self._name)
        self.client.del_event_handler("stream_error", self._on_stream_error)
        self.client.del_event_handler("disconnected", self._on_disconnected)

    async def one(self, iq_id: str, timeout: float):
        """The reply to `iq_id`, or None if none came within `timeout` (or the stream ended)."""
        deadline = time.monotonic() + timeout
        while iq_id not in self.by_id and time.monotonic() < deadline and not self.closed.is_set():
            await asyncio.sleep(0.02)
        return self.by_id.get(iq_id)

    async def stream_end(self, timeout: float) -> bool:
        """Whether the server ended this client's stream within `timeout`."""
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True


async def wait_all(collectors: list[Replies], expected: int, *, timeout: float, stall: float) -> float:
    """Waits until the collectors hold `expected` replies together, `timeout` at most, and gives
    up earlier if no reply at all arrived for `stall` seconds (a wedged link answers nothing
    more). Returns the seconds waited."""
    started = time.monotonic()
    while True:
        now = time.monotonic()
        got = sum(len(c.by_id) for c in collectors)
        last = max(c.last_arrival for c in collectors)
        if got >= expected or now - started > timeout or now - max(last, started) > stall:
            return now - started
        await asyncio.sleep(0.05)


@dataclass
class Tally:
    """What came back for a batch of ids: outcome → count, and the ids never answered."""

    sent: int
    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    duplicates: int = 0

    @property
    def answered(self) -> int:
        return self.sent - len(self.missing)

    @property
    def results(self) -> int:
        return self.outcomes.get(("result", ""), 0)

    def unexpected(self, allowed: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
        return {k: v for k, v in self.outcomes.items() if k != ("result", "") and k not in allowed}

    def __str__(self) -> str:
        parts = ", ".join(f"{t}/{c or '-'}: {n}" for (t, c), n in sorted(self.outcomes.items()))
        return (f"{self.sent} sent, {self.answered} answered ({parts}), {len(self.missing)} unanswered"
                + (f", {self.duplicates} answered twice" if self.duplicates else ""))


def tally(replies: Replies, ids: list[str]) -> Tally:
    t = Tally(sent=len(ids), duplicates=len(replies.duplicates))
    for iq_id in ids:
        stanza = replies.by_id.get(iq_id)
        if stanza is None:
            t.missing.append(iq_id)
        else:
            key = outcome(stanza)
            t.outcomes[key] = t.outcomes.get(key, 0) + 1
    return t


def merge(tallies: list[Tally]) -> Tally:
    total = Tally(sent=sum(t.sent for t in tallies))
    for t in tallies:
        total.missing += t.missing
        total.duplicates += t.duplicates
        for k, v in t.outcomes.items():
            total.outcomes[k] = total.outcomes.get(k, 0) + v
    return total


# --------------------------------------------------------------------------------------------
# A second user's pings, all along


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class PingMonitor:
    """`user` (carol) sends a XEP-0199 ping to the component every `interval` seconds, without
    waiting for the previous one (at 0.5 s, pings answered within 2 s keep her under the
    component's 8 requests in flight per requester), from her own thread, event loop and connection, so that what
    the attacking clients cost this process does not delay her; every ping is timed.

        with PingMonitor(server) as pings:
            ...attack...
        pings.check()   # every ping answered with a result, the slowest under `limit` s
    """

    def __init__(self, server: XmppServer, user: str = "carol", *, interval: float = 0.5,
                 limit: float = 2.0, late: float = 10.0, to: str = DOMAIN):
        self.server = server
        self.user = user
        self.interval = interval
        self.limit = limit
        self.late = late  # how long a ping is waited for (its latency is recorded if it comes)
        self.to = to
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.sent = 0
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"pings {user}", daemon=True)

    def __enter__(self) -> "PingMonitor":
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            self._stop.set()
            self._thread.join(5)
            raise RuntimeError(f"{self.user} could not start pinging: {self._error!r}")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(self.late + 10)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: BLE001 (reported by __enter__ or check())
            self._error = e
            self._ready.set()

    async def _one(self, client, n: int) -> None:
        started = time.perf_counter()
        try:
            await client.plugin["xep_0199"].send_ping(self.to, timeout=self.late)
        except IqTimeout:
            self.failures.append(f"ping {n}: no answer within {self.late:.0f} s")
            return
        except IqError as e:
            kind, condition = outcome(e.iq)
            self.failures.append(f"ping {n}: error {kind}/{condition}")
            return
        self.latencies.append(time.perf_counter() - started)

    async def _main(self) -> None:
        async with connected(self.server, self.user) as client:
            # One ping answered before the attack starts: the baseline is healthy.
            await client.plugin["xep_0199"].send_ping(self.to, timeout=self.late)
            self._ready.set()
            tasks = []
            next_at = time.monotonic()
            while not self._stop.is_set():
                self.sent += 1
                tasks.append(asyncio.ensure_future(self._one(client, self.sent)))
                next_at += self.interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await asyncio.gather(*tasks)

    def summary(self) -> str:
        lat = self.latencies
        if not lat:
            return f"{self.sent} pings, none answered"
        return (f"{self.sent} pings, {len(lat)} answered, p50 {percentile(lat, 50) * 1000:.0f} ms, "
                f"p99 {percentile(lat, 99) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms, "
                f"mean {statistics.mean(lat) * 1000:.0f} ms")

    def check(self, min_pings: int = 4) -> None:
        assert self._error is None, f"{self.user}'s pings failed: {self._error!r}"
        assert self.sent >= min_pings, f"only {self.sent} pings sent"
        assert not self.failures, f"{len(self.failures)} pings unanswered or refused " \
            f"({self.summary()}): {self.failures[:5]}"
        slow = [x for x in self.latencies if x >= self.limit]
        assert not slow, f"{len(slow)} pings answered in {self.limit:.0f} s or more ({self.summary()})"
