"""The bounded outbox (`[pubsub] max_pending`): while the component cannot reach a subscriber,
at most `max_pending` notifications wait for it; older ones give way, and it gets one notice of
how many it missed. The history keeps every reading.

    <message type="headline" from="<usage point>@D" to="<as subscribed>">
      <body>Notifications for node … dropped while you could not be reached: N, …</body>
      <missed xmlns="urn:quoalise:0" node="<series>" count="N" since="<RFC 3339>"/>
    </message>

The component reaches the server through a GatedProxy, as in test_pubsub's outage test: closed
while the server is down, opened once the subscriber has logged in again (a server drops
headlines to an offline user, so the subscriber must be back before the backlog goes out).
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime, timezone
from xml.etree import ElementTree as ET

import pytest

from quoalise_testkit.commands import LIVE, NS_QUOALISE, history_fields, identifier, iso, run_command
from quoalise_testkit.harness import GatedProxy, connected
from quoalise_testkit.live import Inbox, subscription_of
from quoalise_testkit.xmpp import SOURCE, UP1

T = 10  # iq timeout
MAX_PENDING = 3
OUTAGE = 8.0  # seconds without the XMPP server: ≥ 6 readings at one a second, twice the bound
SENML_NAME = identifier(LIVE)
MISSED = f"{{{NS_QUOALISE}}}missed"


def notices(inbox: Inbox) -> list[tuple[float, ET.Element]]:
    return [(t, m) for t, m in inbox.messages if m.find(MISSED) is not None]


@pytest.mark.parametrize("kind", ["prosody", "ejabberd"])
async def test_a_long_outage_leaves_the_newest_notifications_and_one_notice(
    fresh_server, new_component, kind
):
    server = fresh_server(kind)
    proxy = GatedProxy(server.component_port)
    try:
        # The harness writes `extra_xmpp` at the end of [xmpp]: a table after it is the
        # component's [pubsub] table.
        component = new_component(
            server, meters=1, history_days=1, xmpp_port=proxy.port,
            extra_xmpp=f"\n[pubsub]\nmax_pending = {MAX_PENDING}\n",
        )
        async with connected(server, "alice", presence=True) as alice:
            inbox = Inbox(alice)
            iq = await alice.plugin["xep_0060"].subscribe(UP1, LIVE, timeout=T)
            assert subscription_of(iq).get("subscription") == "subscribed"
            assert await inbox.wait(lambda i: len(i.live()) >= 1, 5), "no live notification"
            subscribed_as = alice.boundjid.bare
        # Alice logs out; she stays subscribed.

        proxy.open = False
        stopping_at = time.time()  # the link may drop as soon as the server starts stopping
        await asyncio.to_thread(server.stop)
        down_at = time.time()
        await asyncio.sleep(OUTAGE)
        start_called = time.time()
        await asyncio.to_thread(server.start)
        assert component.running(), component.tail()
        start, end = math.ceil(down_at), math.floor(start_called)
        outage_seconds = end - start
        assert outage_seconds >= 2 * MAX_PENDING, outage_seconds

        async with connected(server, "alice", presence=True) as alice:
            inbox = Inbox(alice)
            opened_at = time.time()
            proxy.open = True
            await asyncio.to_thread(component.wait_established, 2, 30)
            assert await inbox.wait(lambda i: notices(i) and len(i.live()) >= MAX_PENDING + 2, 15), \
                f"{len(notices(inbox))} notices, {len(inbox.live())} notifications after the reconnect"
            await asyncio.sleep(3)  # a second notice would be here by now

            # One notice, from the usage point to the JID as subscribed.
            found = notices(inbox)
            assert len(found) == 1, [ET.tostring(m, encoding="unicode") for _, m in found]
            notice = found[0][1]
            assert (notice.get("type"), notice.get("from"), notice.get("to")) == \
                ("headline", UP1, subscribed_as), notice.attrib
            missed = notice.find(MISSED)
            assert missed.get("node") == LIVE, missed.attrib
            count = int(missed.get("count"))
            since = datetime.fromisoformat(missed.get("since").replace("Z", "+00:00")).timestamp()
            assert stopping_at - 1 <= since <= opened_at, (since, stopping_at, opened_at)
            body = notice.findtext(f"{{{alice.default_ns}}}body")
            assert body and f"node {LIVE}" in body and f": {count}, " in body, body

            # At most MAX_PENDING notifications from before the link came back, then the live
            # feed: consecutive readings, none missing that the notice does not count.
            times = [n.records[0].time for n in inbox.live()]
            assert times == sorted(times) and len(set(times)) == len(times), times
            assert sum(1 for t in times if t < opened_at) <= MAX_PENDING, (times, opened_at)
            gaps = [(a, b) for a, b in zip(times, times[1:]) if b - a != 1]
            assert not gaps, f"gaps {gaps} in {times}"
            assert count >= outage_seconds - MAX_PENDING, (count, outage_seconds)

            # The history holds every reading: those of the outage, and exactly `count` readings
            # queued since `since` (to the second) before the first one delivered.
            first = int(times[0])
            answer = await run_command(
                alice, SOURCE, "get_history",
                history_fields(SENML_NAME,
                               iso(datetime.fromtimestamp(min(start, int(since) - 2), timezone.utc)),
                               iso(datetime.fromtimestamp(max(end, first), timezone.utc))),
            )
            stored = sorted(int(r.time) for r in answer.records)
            outage = [t for t in stored if start <= t < end]
            assert outage == list(range(start, end)), f"outage [{start}, {end}) stored as {outage}"
            dropped = [t for t in stored if int(since) - 1 <= t < first]
            assert len(dropped) - 1 <= count <= len(dropped), \
                f"notice counts {count}; stored from {int(since) - 1} to {first}: {dropped}"
            stored = [t for t in stored if t < first]
            assert stored[-count:] == list(range(first - count, first)), (stored, count, first)
        print(f"\n{kind}: outage {outage_seconds} s, notice of {count} dropped, "
              f"{sum(1 for t in times if t < opened_at)} delivered from before the reconnect")
    finally:
        proxy.stop()
