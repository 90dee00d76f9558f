"""Live feeds (docs/protocol.md §5): XEP-0060 on usage points and generation-2 pushes, through
real servers.

The demo source publishes a reading of `consumption/power/active/instant` of each meter every
second (the harness sets `live_interval = "1s"`). Tests on the shared component end every
subscription they made (`unsubscribe_everything`), so later tests see a quiet component.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime, timezone
from xml.etree import ElementTree as ET

import pytest

from quoalise_testkit.commands import (
    LIVE,
    NS_DATA,
    NS_QUOALISE,
    command_of,
    field_values,
    history_fields,
    identifier,
    iso,
    run_command,
    send_command,
)
from quoalise_testkit.harness import GatedProxy, connected
from quoalise_testkit.live import (
    Inbox,
    Notification,
    expect_pubsub_error,
    item_payload,
    items_of,
    subscription_of,
    subscriptions_of,
    unsubscribe_everything,
)
from quoalise_testkit.xmpp import DOMAIN, SOURCE, UP1, features, forms, identities, items

T = 10  # iq timeout
SENML_NAME = identifier(LIVE)  # urn:dev:prm:99999000000001_consumption/power/active/instant
NOWHERE = f"12345678901234@{DOMAIN}"
LIVE_WINDOW = 10.0  # ≥ 3 live notifications within this many seconds of subscribing
GRACE = 1.0  # a notification already on its way when unsubscribing may still arrive
QUIET = 3.0  # then nothing for this long
Q = f"{{{NS_QUOALISE}}}"


def pubsub(client):
    return client.plugin["xep_0060"]


def check_notification(n: Notification, to: str) -> None:
    """One live-series notification, as XEP-0060 and the README describe it."""
    assert n.type == "headline", n
    assert n.id, "a notification without id"
    assert n.sender == UP1, n.sender
    assert n.to == to, f"sent to {n.to}, subscribed as {to}"
    assert n.node == LIVE, n.node
    assert n.item_id, "an item without id"
    device = n.meta.find(f"{Q}device")
    assert device is not None and device.get("type") == "electricity-meter", ET.tostring(n.meta)
    ident = device.find(f"{Q}identifier")
    assert ident is not None and ident.get("value") == "99999000000001", ET.tostring(n.meta)
    m = n.meta.find(f"{Q}measurement")
    assert m is not None and m.get("unit") == "W" and m.get("sampling-interval") == "PT1S", ET.tostring(n.meta)
    assert len(n.records) == 1, n.records
    for r in n.records:
        assert r.name == SENML_NAME, r
        assert r.unit == "W", r
        assert r.value is not None and r.value >= 0, r
        assert r.time == int(r.time) and abs(r.time - time.time()) < 3600, r


def check_live(live: list[Notification], to: str) -> None:
    for n in live:
        check_notification(n, to)
    ids = [n.id for n in live]
    assert len(set(ids)) == len(ids), f"message ids repeat: {ids}"
    item_ids = [n.item_id for n in live]
    assert len(set(item_ids)) == len(item_ids), f"item ids repeat: {item_ids}"
    times = [n.records[0].time for n in live]
    assert times == sorted(times) and len(set(times)) == len(times), f"times not increasing: {times}"


def check_last_item(inbox: Inbox, subscribed_at: float, to: str) -> Notification:
    """The last published item, right after the subscription result, with a XEP-0203 delay."""
    delayed = [n for n in inbox.notifications() if n.delay_stamp is not None]
    assert len(delayed) == 1, f"{len(delayed)} delayed notifications"
    last = delayed[0]
    check_notification(last, to)
    assert last.received - subscribed_at < 1.5, f"last item {last.received - subscribed_at:.2f} s after the result"
    stamp = datetime.fromisoformat(last.delay_stamp.replace("Z", "+00:00"))
    assert stamp.tzinfo is not None and stamp <= datetime.now(timezone.utc), last.delay_stamp
    assert stamp.timestamp() >= last.records[0].time, (last.delay_stamp, last.records)
    return last


async def subscribe_and_watch(client, inbox: Inbox, *, bare: bool) -> tuple[str, str, float]:
    """Subscribes `client` to the live node of UP1; checks the answer, the last item and ≥ 3 live
    notifications; returns (jid as subscribed, subid, monotonic time of the result)."""
    jid = client.boundjid.bare if bare else client.boundjid.full
    iq = await pubsub(client).subscribe(UP1, LIVE, bare=bare, timeout=T)
    subscribed_at = time.monotonic()
    sub = subscription_of(iq)
    assert sub.get("subscription") == "subscribed", sub.attrib
    assert sub.get("node") == LIVE and sub.get("jid") == jid, sub.attrib
    subid = sub.get("subid")
    assert subid, sub.attrib

    got_last = await inbox.wait(lambda i: any(n.delay_stamp for n in i.notifications()), 3)
    assert got_last, f"no delayed last item within 3 s; messages: {len(inbox.messages)}"
    last = check_last_item(inbox, subscribed_at, jid)

    assert await inbox.wait(lambda i: len(i.live()) >= 3, LIVE_WINDOW), \
        f"{len(inbox.live())} live notifications within {LIVE_WINDOW:.0f} s"
    live = inbox.live()
    assert live[2].received - subscribed_at <= LIVE_WINDOW
    check_live(live, jid)
    assert last.records[0].time <= live[0].records[0].time
    return jid, subid, subscribed_at


async def test_subscribe_bare_jid(server, component):
    """Subscribe, last item, live notifications, items, subscriptions, disco#items of the node,
    unsubscribe without subid, and unsubscribing twice."""
    async with connected(server, "alice", presence=True) as alice:
        inbox = Inbox(alice)
        ps = pubsub(alice)
        try:
            jid, subid, _ = await subscribe_and_watch(alice, inbox, bare=True)

            # Items: max_items=2 gives the two newest.
            before = sorted(t for n in inbox.notifications() for t in n.times)
            iq = await ps.get_items(UP1, LIVE, max_items=2, timeout=T)
            node, got = items_of(iq)
            assert node == LIVE and len(got) == 2, (node, len(got))
            newest = {}
            for item in got:
                _, records = item_payload(item)
                assert [r.name for r in records] == [SENML_NAME]
                newest[item.get("id")] = records[0].time
            assert min(newest.values()) >= before[-2], f"max_items=2 gave {newest}, received {before[-3:]}"
            await asyncio.sleep(GRACE)  # their notifications, if still on their way
            received_ids = {n.item_id for n in inbox.notifications()}
            assert set(newest) <= received_ids, (newest, received_ids)

            # Items by id.
            first = inbox.live()[0]
            iq = await ps.get_items(UP1, LIVE, item_ids=[first.item_id], timeout=T)
            _, got = items_of(iq)
            assert [i.get("id") for i in got] == [first.item_id]
            assert item_payload(got[0])[1] == first.records

            # All items, and the same ids on disco#items of the node (names, XEP-0060 §5.5).
            iq = await ps.get_items(UP1, LIVE, timeout=T)
            _, got = items_of(iq)
            all_ids = [i.get("id") for i in got]
            assert {n.item_id for n in inbox.live()} <= set(all_ids)
            iq = await alice.plugin["xep_0030"].get_items(jid=UP1, node=LIVE, timeout=T)
            listed = items(iq)
            assert all(j == UP1 and node is None and name for j, node, name in listed), listed[:3]
            assert {n.item_id for n in inbox.live()} <= {name for _, _, name in listed}

            # Subscriptions, all and by node.
            expected = {"node": LIVE, "jid": jid, "subid": subid, "subscription": "subscribed"}
            for node in (None, LIVE):
                iq = await ps.get_subscriptions(UP1, node=node, timeout=T)
                assert subscriptions_of(iq) == [expected], subscriptions_of(iq)

            # A subid that is not this subscription's.
            await expect_pubsub_error(
                ps.unsubscribe(UP1, LIVE, subid="not-" + subid, timeout=T), "not-acceptable", "invalid-subid"
            )

            # Unsubscribe without subid: notifications stop.
            await ps.unsubscribe(UP1, LIVE, timeout=T)
            stopped = time.monotonic()
            await asyncio.sleep(GRACE + QUIET)
            late = inbox.notifications(since=stopped + GRACE)
            assert late == [], f"{len(late)} notifications more than {GRACE} s after unsubscribing"
            iq = await ps.get_subscriptions(UP1, timeout=T)
            assert subscriptions_of(iq) == []

            # Again: not subscribed.
            await expect_pubsub_error(ps.unsubscribe(UP1, LIVE, timeout=T), "unexpected-request", "not-subscribed")
        finally:
            await unsubscribe_everything(alice, [UP1])


async def test_subscribe_full_jid_reaches_that_resource_only(server, component):
    async with connected(server, "alice", resource="phone", presence=True) as phone, \
            connected(server, "alice", resource="laptop", presence=True) as laptop:
        phone_inbox, laptop_inbox = Inbox(phone), Inbox(laptop)
        try:
            jid, subid, _ = await subscribe_and_watch(phone, phone_inbox, bare=False)
            assert jid == str(phone.boundjid.full) and jid.endswith("/phone"), jid
            iq = await pubsub(laptop).get_subscriptions(UP1, timeout=T)
            assert [(s["jid"], s["subid"]) for s in subscriptions_of(iq)] == [(jid, subid)], \
                "the user's subscriptions, whichever resource asks"
            assert laptop_inbox.from_component(DOMAIN) == [], \
                f"the other resource got {len(laptop_inbox.from_component(DOMAIN))} messages"
            # Unsubscribing the full JID with its subid.
            await pubsub(phone).unsubscribe(UP1, LIVE, subid=subid, bare=False, timeout=T)
        finally:
            await unsubscribe_everything(phone, [UP1])


async def test_refusals(server, component):
    async with connected(server, "alice") as alice, connected(server, "bob") as bob:
        ps = pubsub(alice)
        payload = ET.Element(f"{Q}quoalise")
        # Nodes belong to the sources.
        await expect_pubsub_error(ps.publish(UP1, LIVE, payload=payload, timeout=T), "forbidden", None)
        await expect_pubsub_error(ps.create_node(UP1, "mine", timeout=T), "forbidden", None)
        await expect_pubsub_error(ps.retract(UP1, LIVE, "x", timeout=T), "forbidden", None)
        await expect_pubsub_error(ps.purge(UP1, LIVE, timeout=T), "forbidden", None)
        await expect_pubsub_error(ps.delete_node(UP1, LIVE, timeout=T), "forbidden", None)
        await expect_pubsub_error(ps.get_affiliations(UP1, timeout=T), "feature-not-implemented", "unsupported")
        # Subscribing someone else; an unknown node.
        await expect_pubsub_error(
            ps.subscribe(UP1, LIVE, subscribee="mallory@localhost", timeout=T), "bad-request", "invalid-jid"
        )
        await expect_pubsub_error(ps.subscribe(UP1, "no/such/node", timeout=T), "item-not-found", None)

        # Bob has no grant: the whitelist answer, the same for a usage point that does not exist.
        answers = {}
        for target in (UP1, NOWHERE):
            sub = await expect_pubsub_error(pubsub(bob).subscribe(target, LIVE, timeout=T), "not-allowed", "closed-node")
            get = await expect_pubsub_error(pubsub(bob).get_items(target, LIVE, timeout=T), "not-allowed", "closed-node")
            answers[target] = [(e.iq["error"]["type"], e.iq["error"]["text"]) for e in (sub, get)]
        assert answers[UP1] == answers[NOWHERE], f"the answers tell the usage points apart: {answers}"


async def test_pubsub_discovery(server, component):
    async with connected(server, "alice") as alice:
        disco = alice.plugin["xep_0030"]
        iq = await disco.get_info(jid=UP1, timeout=T)
        advertised = features(iq)
        for feature in ["", "#subscribe", "#retrieve-items", "#retrieve-subscriptions", "#last-published",
                        "#access-whitelist", "#meta-data"]:
            assert f"http://jabber.org/protocol/pubsub{feature}" in advertised, \
                f"missing pubsub{feature}: {sorted(advertised)}"
        assert ("pubsub", "service") in {(c, t) for c, t, _ in identities(iq)}

        iq = await disco.get_info(jid=UP1, node=LIVE, timeout=T)
        assert ("pubsub", "leaf") in {(c, t) for c, t, _ in identities(iq)}
        meta = forms(iq).get("http://jabber.org/protocol/pubsub#meta-data")
        assert meta is not None, iq
        assert meta["quoalise#unit"] == ["W"]
        assert meta["quoalise#sampling-interval"] == ["PT1S"]

        # disco#items of a node: its item ids, as names (the shared component has been
        # publishing every second since it started).
        iq = await pubsub(alice).get_items(UP1, LIVE, max_items=3, timeout=T)
        newest = [i.get("id") for i in items_of(iq)[1]]
        assert len(newest) == 3, newest
        iq = await disco.get_items(jid=UP1, node=LIVE, timeout=T)
        listed = items(iq)
        assert set(newest) <= {name for _, _, name in listed}, (newest, listed[:5])
        assert all(j == UP1 and node is None for j, node, _ in listed), listed[:3]


async def test_generation_2_push(server, component):
    async with connected(server, "alice", presence=True) as alice:
        inbox = Inbox(alice)
        bare = alice.boundjid.bare
        try:
            iq = await send_command(alice, SOURCE, "subscribe", {"identifier": SENML_NAME}, timeout=T)
            subscribed_at = time.monotonic()
            cmd = command_of(iq)
            assert cmd.get("status") == "completed", cmd.attrib
            form = cmd.find(f"{{{NS_DATA}}}x")
            assert form is not None and field_values(form)["result"] == ["Success"], iq

            assert await inbox.wait(lambda i: len(i.pushes()) >= 3, LIVE_WINDOW), \
                f"{len(inbox.pushes())} pushes within {LIVE_WINDOW:.0f} s"
            pushes = inbox.pushes()
            assert pushes[0].received - subscribed_at < 3, "the first push took more than 3 s"
            for p in pushes:
                assert p.to == bare, f"push to {p.to}, not the bare JID"
                assert p.sender == UP1, p.sender
                assert p.type in (None, "normal"), p.type
                assert [(r.name, r.unit) for r in p.records] == [(SENML_NAME, "W")], p.records
            times = [p.records[0].time for p in pushes]
            assert times == sorted(set(times)), times
            assert inbox.notifications() == [], "pushes are not PubSub notifications"

            # A bare usage-point URN ends every push subscription on it.
            iq = await send_command(alice, SOURCE, "unsubscribe", {"identifier": "urn:dev:prm:99999000000001"}, timeout=T)
            stopped = time.monotonic()
            cmd = command_of(iq)
            assert cmd.get("status") == "completed", cmd.attrib
            await asyncio.sleep(GRACE + QUIET)
            late = inbox.pushes(since=stopped + GRACE)
            assert late == [], f"{len(late)} pushes more than {GRACE} s after unsubscribing"
        finally:
            await unsubscribe_everything(alice, [UP1], push_source=SOURCE)


@pytest.mark.parametrize("kind", ["prosody", "ejabberd"])
async def test_component_restart_keeps_subscriptions(fresh_server, new_component, kind):
    server = fresh_server(kind)
    component = new_component(server, meters=1, history_days=1)
    async with connected(server, "alice", presence=True) as alice:
        inbox = Inbox(alice)
        iq = await pubsub(alice).subscribe(UP1, LIVE, timeout=T)
        subid = subscription_of(iq).get("subid")
        assert await inbox.wait(lambda i: len(i.live()) >= 1, 5), "no live notification before the restart"

        await asyncio.to_thread(component.stop)  # SIGTERM, then wait for it to exit
        stopped = time.monotonic()
        assert "shutting down" in component.log(), component.tail()
        newest_before = max(t for n in inbox.notifications() for t in n.times)
        component.start()
        await asyncio.to_thread(component.wait_established, 2)

        # No new subscribe: notifications resume.
        assert await inbox.wait(lambda i: len(i.live(since=stopped)) >= 2, 10), \
            f"{len(inbox.live(since=stopped))} notifications within 10 s of the restart\n{component.tail()}"
        after = inbox.live(since=stopped)
        check_live(after, alice.boundjid.bare)
        # (A restart within the second of the last reading publishes that second again.)
        assert after[0].records[0].time >= newest_before and after[-1].records[0].time > newest_before
        iq = await pubsub(alice).get_subscriptions(UP1, timeout=T)
        assert [(s["node"], s["subid"]) for s in subscriptions_of(iq)] == [(LIVE, subid)]


OUTAGE = 8.0  # seconds without the XMPP server (≥ 6 readings at one a second)


@pytest.mark.servers("prosody")
async def test_readings_while_the_server_is_down(fresh_server, new_component):
    """Prosody stops for OUTAGE seconds: the source keeps producing, every reading is in the
    history afterwards, and a subscriber receives the notifications queued meanwhile.

    The component reaches Prosody through a GatedProxy, closed during the outage and opened once
    the subscriber has logged in again: headline messages to an offline user are dropped by the
    server, so the subscriber must be back before the component delivers its backlog."""
    server = fresh_server("prosody")
    proxy = GatedProxy(server.component_port)
    try:
        component = new_component(server, meters=1, history_days=1, xmpp_port=proxy.port)
        async with connected(server, "alice", presence=True) as alice:
            inbox = Inbox(alice)
            iq = await pubsub(alice).subscribe(UP1, LIVE, timeout=T)
            subid = subscription_of(iq).get("subid")
            assert await inbox.wait(lambda i: len(i.live()) >= 1, 5)
        # Alice logs out; she stays subscribed.

        proxy.open = False
        await asyncio.to_thread(server.stop)
        down_at = time.time()
        await asyncio.sleep(OUTAGE)
        start_called = time.time()
        await asyncio.to_thread(server.start)
        assert component.running(), component.tail()
        assert component.count("xmpp link lost") >= 1, component.tail()

        # The readings stamped while Prosody was surely down.
        start, end = math.ceil(down_at), math.floor(start_called)
        outage_seconds = end - start
        assert outage_seconds >= 6, outage_seconds

        async with connected(server, "alice", presence=True) as alice:
            inbox = Inbox(alice)
            proxy.open = True
            await asyncio.to_thread(component.wait_established, 2, 30)

            def covered(i: Inbox) -> bool:
                got = {t for n in i.live() for t in n.times}
                return set(range(start, end)) <= got

            await inbox.wait(covered, 10)
            received = sorted({t for n in inbox.live() for t in n.times if start <= t < end})

            answer = await run_command(
                alice, SOURCE, "get_history",
                history_fields(SENML_NAME, iso(datetime.fromtimestamp(start, timezone.utc)),
                               iso(datetime.fromtimestamp(end, timezone.utc))),
            )
            stored = sorted(r.time for r in answer.records)
            assert all(r.name == SENML_NAME and r.unit == "W" for r in answer.records)
            assert abs(len(stored) - outage_seconds) <= 1, \
                f"{len(stored)} readings stored for {outage_seconds} s of outage: {stored}"
            gaps = [(a, b) for a, b in zip(stored, stored[1:]) if b - a != 1]
            assert not gaps and stored[0] <= start + 1 and stored[-1] >= end - 2, \
                f"gaps {gaps} in {stored} over [{start}, {end})"

            missing = sorted(set(stored) - set(received))
            assert not missing, (
                f"notifications received for {len(received)} of {len(stored)} readings of the "
                f"outage; missing {missing}\n{component.tail(20)}"
            )
            iq = await pubsub(alice).get_subscriptions(UP1, timeout=T)
            assert [s["subid"] for s in subscriptions_of(iq)] == [subid]
        print(f"\noutage {outage_seconds} s: {len(stored)} readings stored, {len(received)} notified "
              f"after the reconnect; the component tried {proxy.refused} time(s) while gated")
    finally:
        proxy.stop()
