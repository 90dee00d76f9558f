"""The crash story of the fan-out: `kill -9` of the component in the middle of a burst of
notifications loses nothing, and after the restart each subscription receives again at most
what was in flight when it died.

1. A component with two demo meters (a live reading of each every second), reaching the server
   through a GatedProxy, with a low `[xmpp] delivery_rate` (the burst lasts seconds) and a
   `[pubsub] max_pending` far above the backlog (the bound drops nothing).
2. SUBSCRIBERS resources of alice, each subscribed with its full JID to the live node of both
   meters: SUBSCRIBERS × 2 subscriptions, each notified once a second.
3. The proxy cuts the link for OUTAGE seconds: the readings are stored and their notifications
   queued, hundreds in all. The proxy opens, the component reconnects and delivers the backlog
   at its delivery rate.
4. Once half of the subscriptions have received KILL_AFTER distinct readings (more than the
   bound, so a restart that resent from an old position would show), and while part of the
   backlog is still on its way, the component gets SIGKILL (no graceful shutdown) and is started
   again on the same config, workdir and SQLite store. Half, not all: a delivery that takes the
   oldest notifications of all subscriptions together has them all there at about the same
   time, one that claims subscriptions a batch of publications each serves some subscriptions
   whole before others start.
5. Each subscription must then receive every reading the history (`get_history`) holds from its
   first notification to a little after the restart: nothing lost. A reading received more than
   once is a duplicate; per subscription at most DUPLICATE_BOUND, all of them stamped before the
   kill and after (last reading received before the kill - DUPLICATE_BOUND): a delivery claims
   at most DUPLICATE_BOUND publications per subscription, and only a claim that was on its way
   when the process died is sent again. (A restart within the second of the kill publishes that
   second's reading once more, under a new stanza id: one more duplicate, stamped before the
   kill. The failure messages give the stanza ids of every duplicate: one id twice is a resend.)

The test takes about OUTAGE + 25 s: a SQLite store is one process's alone, so the restart
releases the killed run's claims at once instead of waiting for their lease (30 s), and
COMPLETION_TIMEOUT leaves no room for that wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest

from quoalise_testkit.commands import LIVE, history_fields, identifier, iso, run_command
from quoalise_testkit.harness import ESTABLISHED, GatedProxy, connected
from quoalise_testkit.live import Inbox, parse_notification, subscription_of
from quoalise_testkit.xmpp import DOMAIN, SOURCE, USAGE_POINTS

T = 10  # iq timeout
METERS = 2
SUBSCRIBERS = 4
OUTAGE = 40.0  # seconds without the link: a backlog of as many readings per subscription
DELIVERY_RATE = 40  # notifications a second: the backlog of 8 × ~44 takes ~9 s to go out
DUPLICATE_BOUND = 32  # publications a delivery claims per subscription at most
KILL_AFTER = DUPLICATE_BOUND + 4  # distinct readings half the subscriptions have at the kill
MIN_LEFT = 16  # backlog notifications at least still to receive at the kill, all together
BURST_TIMEOUT = 30.0  # from the proxy opening to the kill
COMPLETION_TIMEOUT = 25.0  # from the restart to every reading received (less than a lease)
SETTLE = 2.0  # then this long for any late duplicate


@dataclass
class Subscription:
    """One (resource, usage point) subscription and the live notifications it received."""

    subscriber: int
    jid: str  # full JID, as subscribed
    usage_point: str  # its JID
    first: int = 0  # reading time of its first notification
    # (reading time, stanza id, time.monotonic() at arrival), in arrival order
    received: list[tuple[int, str | None, float]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.jid} on {self.usage_point}"

    def times(self, before: float = math.inf) -> set[int]:
        return {t for t, _, at in self.received if at < before}


class Collector:
    """Sorts the live notifications of the inboxes into their subscriptions, reading each
    message once (the polls run on the clients' event loop: they must stay cheap)."""

    def __init__(self, inboxes: list[Inbox], subs: dict[tuple[int, str], Subscription]):
        self.inboxes = inboxes
        self.subs = subs
        self.read = [0] * len(inboxes)

    def __call__(self) -> None:
        for i, inbox in enumerate(self.inboxes):
            fresh = inbox.messages[self.read[i]:]
            self.read[i] += len(fresh)
            for received, msg in fresh:
                n = parse_notification(received, msg)
                if n is None or n.delay_stamp is not None:
                    continue  # not a notification, or the last item sent on subscribe
                sub = self.subs.get((i, n.sender))
                assert sub is not None, f"a notification from {n.sender} to {n.to}, not subscribed"
                assert (n.type, n.node, n.to) == ("headline", LIVE, sub.jid), n
                assert len(n.records) == 1, n.records
                sub.received.append((int(n.records[0].time), n.id, n.received))


def next_whole_second() -> float:
    """Seconds until the next whole second: the demo publishes at mid-second, so a link cut
    then has nothing half-written."""
    return math.ceil(time.time()) - time.time()


@pytest.mark.parametrize("kind", ["prosody", "ejabberd"])
async def test_kill_9_during_a_burst_loses_nothing_and_resends_only_what_was_in_flight(
    fresh_server, new_component, kind
):
    began = time.monotonic()
    server = fresh_server(kind)
    proxy = GatedProxy(server.component_port)
    usage_points = [f"{up}@{DOMAIN}" for up in USAGE_POINTS[:METERS]]
    try:
        # `extra_xmpp` ends [xmpp]: the table after it is the component's [pubsub].
        component = new_component(
            server, meters=METERS, history_days=1, xmpp_port=proxy.port,
            reconnect_max_delay="1s",
            extra_xmpp=f"delivery_rate = {DELIVERY_RATE}\n\n[pubsub]\nmax_pending = 100000\n",
        )
        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(
                    connected(server, "alice", resource=f"crash-{i}", presence=True)
                )
                for i in range(SUBSCRIBERS)
            ]
            inboxes = [Inbox(c) for c in clients]
            subs: dict[tuple[int, str], Subscription] = {}
            for i, client in enumerate(clients):
                for up in usage_points:
                    iq = await client.plugin["xep_0060"].subscribe(
                        up, LIVE, subscribee=client.boundjid.full, timeout=T
                    )
                    sub = subscription_of(iq)
                    assert (sub.get("subscription"), sub.get("jid")) == \
                        ("subscribed", client.boundjid.full), sub.attrib
                    subs[(i, up)] = Subscription(i, client.boundjid.full, up)

            collect = Collector(inboxes, subs)

            def have(count: int, share: float = 1.0) -> bool:
                """Whether `share` of the subscriptions have `count` distinct readings."""
                collect()
                return sum(len(s.times()) >= count for s in subs.values()) >= share * len(subs)

            assert await inboxes[0].wait(lambda _: have(2), 10), \
                {s.name: sorted(s.times()) for s in subs.values()}
            for s in subs.values():
                s.first = min(s.times())

            # The outage: the link is cut, the readings go on and queue up.
            await asyncio.sleep(next_whole_second())
            proxy.cut()
            cut_at = time.time()
            await asyncio.sleep(OUTAGE)
            established = component.count(ESTABLISHED)
            opened_at = time.time()
            proxy.open = True
            backlog = range(math.ceil(cut_at), math.floor(opened_at))

            def left(s: Subscription) -> int:
                return len(set(backlog) - s.times())

            # Part of the backlog delivered, clearly not all: kill -9.
            def counts() -> dict[str, int]:
                return {s.name: len(s.times()) for s in subs.values()}

            assert await inboxes[0].wait(lambda _: have(KILL_AFTER, 0.5), BURST_TIMEOUT), (
                f"not {KILL_AFTER} readings for half the subscriptions within "
                f"{BURST_TIMEOUT:.0f} s of the reconnect: {counts()}\n{component.tail(20)}"
            )
            killed = time.monotonic()
            component.kill9()
            killed_at = time.time()
            collect()
            before = {key: s.times(killed) for key, s in subs.items()}
            last_before = {key: max(times) for key, times in before.items()}
            in_burst = {s.name: left(s) for s in subs.values()}
            assert sum(in_burst.values()) >= MIN_LEFT, (
                f"the burst was (nearly) over at the kill: backlog readings still to receive "
                f"{in_burst}; make the outage longer or the delivery rate lower"
            )
            assert component.count(ESTABLISHED) == established + 1, component.tail(20)

            # The restart on the same store.
            component.start()
            await asyncio.to_thread(component.wait_established, established + 2, 30)
            window_end = math.ceil(time.time()) + 2  # a few readings of the new process too
            await asyncio.sleep(window_end + 1 - time.time())

            # The readings each subscription must have: those stored.
            stored: dict[str, list[int]] = {}
            for up in usage_points:
                start = min(s.first for s in subs.values()) - 1
                answer = await run_command(
                    clients[0], SOURCE, "get_history",
                    history_fields(
                        identifier(LIVE, up.split("@")[0]),
                        iso(datetime.fromtimestamp(start, timezone.utc)),
                        iso(datetime.fromtimestamp(window_end + 1, timezone.utc)),
                    ),
                )
                stored[up] = sorted(int(r.time) for r in answer.records)
                # The history holds every reading from the first notification to the kill.
                alive = [t for t in stored[up] if start < t < math.floor(killed_at)]
                assert alive == list(range(start + 1, math.floor(killed_at))), \
                    f"{up}: gaps in the history before the kill: {alive}"
                assert any(t > killed_at for t in stored[up]), \
                    f"{up}: no reading stored after the restart: {stored[up][-5:]}"
            expected = {
                key: {t for t in stored[s.usage_point] if s.first <= t <= window_end}
                for key, s in subs.items()
            }

            def complete(_) -> bool:
                collect()
                return all(expected[key] <= s.times() for key, s in subs.items())

            await inboxes[0].wait(complete, COMPLETION_TIMEOUT - (time.monotonic() - killed), 0.2)
            completed = time.monotonic()
            await asyncio.sleep(SETTLE)
            collect()

            report = []
            failures = []
            for key, s in subs.items():
                missing = sorted(expected[key] - s.times())
                if missing:
                    failures.append(
                        f"{s.name}: {len(missing)} of {len(expected[key])} readings never "
                        f"received: {missing} (last before the kill {last_before[key]}, kill at "
                        f"{killed_at:.1f})"
                    )
                ids: dict[int, list[str | None]] = {}
                for t, stanza_id, _ in s.received:
                    ids.setdefault(t, []).append(stanza_id)
                dups = {t: i for t, i in sorted(ids.items()) if len(i) > 1}
                report.append(f"{s.name}: {len(dups)} received more than once (time: stanza ids) {dups}")
                if len(dups) > DUPLICATE_BOUND:
                    failures.append(
                        f"{s.name}: {len(dups)} readings received more than once, more than "
                        f"{DUPLICATE_BOUND}: {dups}"
                    )
                floor = last_before[key] - DUPLICATE_BOUND
                stray = {t: i for t, i in dups.items() if not floor < t < killed_at}
                if stray:
                    failures.append(
                        f"{s.name}: readings received again that were not in flight at the kill "
                        f"(stamped in ({floor}, {killed_at:.0f})): {stray}"
                    )
            assert not failures, "\n".join(failures + ["--- duplicates"] + report)
        print(
            f"\n{kind}: {len(subs)} subscriptions, backlog {len(backlog)} s each; killed with "
            f"{sorted(in_burst.values())} backlog readings still to receive; complete "
            f"{completed - killed:.1f} s after the kill; total {time.monotonic() - began:.0f} s\n"
            + "\n".join(report)
        )
    finally:
        proxy.stop()
