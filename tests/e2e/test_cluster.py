"""Two component instances on a real two-node ejabberd 23.01 cluster, one PostgreSQL store.

Instance `a` is connected to node A, instance `b` to node B (the deployment of
deploy/cluster/README.md: each node routes the domain's stanzas to its own instance, and to the
other node's while its own is down). One story, on one cluster start:

1. Both instances serve: discovery and history through each, a subscription through each.
2. A grant added through instance b (admin command) lets bob subscribe through b; revoked
   through instance a, bob's subscription (made through b) ends within seconds: the store's
   change feed reaches b, and a ends the subscriptions itself.
3. A multi-stage command opened on instance a (alice on node A gets the form) is finished on
   instance b after a is killed (`kill -9`): its session lives in the store.
4. Instance a led the demo source; after its death b takes it over within `[cluster] takeover`,
   live readings go on, and alice's feed shows every stored reading, none published twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import defaultdict
from datetime import datetime, timezone

import pytest

from quoalise_testkit.cluster import EjabberdCluster
from quoalise_testkit.commands import (
    LIVE, admin_command, check_page, command_of, history_fields, identifier, iso, make_form,
    run_command, send_command,
)
from quoalise_testkit.harness import (
    COMPONENT_DOMAIN, GatedProxy, HarnessError, connected, free_port, wait_until,
)
from quoalise_testkit.instances import (
    TAKEOVER, check_feed_complete, healthz, instance, metric, publication_seq,
)
from quoalise_testkit.live import Inbox, subscription_ended as ended, unsubscribe_everything
from quoalise_testkit.xmpp import SOURCE, UP1, identities

pytestmark = pytest.mark.timeout(240)

T = 10


@pytest.fixture
def cluster(workspace):
    c = EjabberdCluster(workspace.mkdir("ejabberd-cluster"))
    try:
        c.start()
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)
    yield c
    c.stop()


async def test_two_instances_on_an_ejabberd_cluster(cluster, pg_cluster, workspace):
    url = pg_cluster.create_database("quoalise_cluster")
    ports = {"a": free_port(), "b": free_port()}
    a = instance(cluster.a, workspace, "a", url, ports["a"])
    b = instance(cluster.b, workspace, "b", url, ports["b"])
    try:
        a.start()
        a.wait_established()
        # a takes the demo source first; b starts once a leads it.
        assert wait_until(lambda: healthz(ports["a"]).get("leads") == ["source:demo"], 15), a.tail()
        b.start()
        b.wait_established()
        assert healthz(ports["b"])["leads"] == []

        async with connected(cluster.a, "alice", presence=True) as alice, \
                connected(cluster.b, "bob", presence=True) as bob, \
                connected(cluster.a, "admin", resource="on-a") as admin_a, \
                connected(cluster.b, "admin", resource="on-b") as admin_b:
            # 1. Both instances serve discovery and history.
            seen = [
                identities(await client.plugin["xep_0030"].get_info(COMPONENT_DOMAIN, timeout=T))
                for client in (alice, bob)
            ]
            assert seen[0] and seen[0] == seen[1], seen
            window = history_fields(
                identifier(LIVE), iso(datetime.fromtimestamp(time.time() - 120, timezone.utc)),
                iso(datetime.fromtimestamp(time.time() + 60, timezone.utc)))
            assert (await run_command(alice, SOURCE, "get_history", window)).records

            # 2. A grant added through b; bob reads and subscribes through b.
            added = await admin_command(admin_b, "admin-grant-add", {
                "jid": "bob@localhost", "usage_point": "*", "series": "*",
                "purpose": "cluster e2e"})
            grant = added["grant"][0]
            assert (await run_command(bob, SOURCE, "get_history", window)).records
            alice_inbox, bob_inbox = Inbox(alice), Inbox(bob)
            await alice.plugin["xep_0060"].subscribe(UP1, LIVE, timeout=T)
            await bob.plugin["xep_0060"].subscribe(UP1, LIVE, timeout=T)
            assert await alice_inbox.wait(lambda i: len(i.live()) >= 2, 15), "alice's live feed"
            assert await bob_inbox.wait(lambda i: len(i.live()) >= 2, 15), "bob's live feed"
            listed = await admin_command(admin_a, "admin-grants-list", {"jid": "bob@localhost"})
            assert any(line.startswith(f"#{grant} bob@localhost") for line in listed["grants"]), listed

            # ... revoked through a: bob's subscription ends within seconds.
            revoked_at = time.monotonic()
            await admin_command(admin_a, "admin-grant-revoke", {"grant": grant})
            assert await bob_inbox.wait(lambda i: ended(i, LIVE), 5), "bob's subscription did not end"
            print(f"subscription ended {time.monotonic() - revoked_at:.2f} s after the revocation")
            quiet_from = time.monotonic() + 1
            await asyncio.sleep(3)
            assert not bob_inbox.live(since=quiet_from), "bob still notified after the revocation"

            # 3. A command opened on a (alice is on node A) ...
            iq = await send_command(alice, SOURCE, "get_history", None, timeout=T)
            opened = command_of(iq)
            sessionid = opened.get("sessionid")
            assert opened.get("status") == "executing" and sessionid

            # 4. ... a, leading the demo source, dies.
            killed = time.time()
            a.kill9()
            # ejabberd drops a's route within milliseconds of noticing the closed socket; a
            # stanza sent in those milliseconds is lost (tests/e2e/test_cluster_harness.py).
            await asyncio.sleep(1)
            # The submit reaches b (node A has no instance now), which finishes the session.
            iq = await alice.plugin["xep_0050"].send_command(
                SOURCE, "get_history", action="complete", payload=make_form(alice, window),
                sessionid=sessionid, timeout=T)
            page = check_page(command_of(iq))
            assert page.records, "the session finished on b"
            assert command_of(iq).get("sessionid") == sessionid

            assert wait_until(lambda: healthz(ports["b"])["leads"] == ["source:demo"], TAKEOVER + 6), b.tail()
            led_after = time.time() - killed
            print(f"b led the demo source {led_after:.1f} s after a's death")
            assert await alice_inbox.wait(
                lambda i: any(t > killed + 1 for n in i.live() for t in n.times), TAKEOVER + 15
            ), f"no live reading after the takeover\n{b.tail()}"

            # Every reading stored from alice's first notification on arrives, none twice.
            await check_feed_complete(alice, alice_inbox)
            await unsubscribe_everything(alice, [UP1])
        assert b.running(), b.tail()
    finally:
        a.stop()
        b.stop()


SUBSCRIBERS = 4  # resources of alice, half on each node, each subscribed with its full JID
OUTAGE = 20.0  # seconds with both links cut: a backlog of as many readings per subscription
DELIVERY_RATE = 4  # notifications a second per instance: the backlog takes seconds to go out
DEPTH = 32  # publications a delivery claims per subscription at most (src/delivery/mod.rs)
LEASE = 30  # seconds a delivery claim lasts (src/delivery/mod.rs)


def sent_total(port: int) -> int:
    return int(float(metric(port, "quoalise_notifications_sent_total") or 0))


async def test_kill_9_of_one_instance_mid_burst_loses_nothing(cluster, pg_cluster, workspace):
    url = pg_cluster.create_database("quoalise_cluster_burst")
    proxies = {"a": GatedProxy(cluster.a.component_port), "b": GatedProxy(cluster.b.component_port)}
    ports = {"a": free_port(), "b": free_port()}
    extra = f"delivery_rate = {DELIVERY_RATE}\n\n[pubsub]\nmax_pending = 100000\n"
    a = instance(cluster.a, workspace, "a", url, ports["a"], xmpp_port=proxies["a"].port, extra_xmpp=extra)
    b = instance(cluster.b, workspace, "b", url, ports["b"], xmpp_port=proxies["b"].port, extra_xmpp=extra)
    try:
        a.start()
        b.start()
        a.wait_established()
        b.wait_established()
        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(connected(
                    cluster.a if i % 2 == 0 else cluster.b, "alice", resource=f"burst-{i}",
                    presence=True))
                for i in range(SUBSCRIBERS)
            ]
            inboxes = [Inbox(c) for c in clients]
            for c in clients:
                await c.plugin["xep_0060"].subscribe(UP1, LIVE, subscribee=c.boundjid.full, timeout=T)

            def times(inbox: Inbox) -> list[int]:
                return [int(t) for n in inbox.live() for t in n.times]

            assert await inboxes[0].wait(lambda _: all(len(times(i)) >= 2 for i in inboxes), 15)
            first = {i: min(times(inbox)) for i, inbox in enumerate(inboxes)}

            # Both links cut: the readings go on (on the demo's leader) and queue up.
            await asyncio.sleep(math.ceil(time.time()) - time.time())
            for p in proxies.values():
                p.cut()
            cut_at = time.time()
            await asyncio.sleep(OUTAGE)
            sent_at_open = {k: sent_total(port) for k, port in ports.items()}
            for p in proxies.values():
                p.open = True
            backlog = range(math.ceil(cut_at), math.floor(time.time()))

            def delivered() -> int:
                return sum(len(set(backlog) & set(times(i))) for i in inboxes)

            total = len(backlog) * SUBSCRIBERS
            assert await inboxes[0].wait(lambda _: delivered() >= total // 4, 30), (
                f"{delivered()} of {total} backlog notifications 30 s after the links came back\n{a.tail(20)}")
            sent_before_kill = sent_total(ports["a"]) - sent_at_open["a"]
            killed_at = time.time()
            a.kill9()
            left = total - delivered()
            assert sent_before_kill > 0, "instance a delivered none of the burst before its death"
            assert left >= 8, f"the burst was nearly over at the kill ({left} left)"

            # b delivers the rest; what a had claimed and not written comes once its lease passes.
            window_end = math.ceil(time.time()) + 2
            await asyncio.sleep(window_end + 1 - time.time())
            stored_answer = await run_command(clients[0], SOURCE, "get_history", history_fields(
                identifier(LIVE), iso(datetime.fromtimestamp(min(first.values()), timezone.utc)),
                iso(datetime.fromtimestamp(window_end + 1, timezone.utc))))
            stored = sorted(int(r.time) for r in stored_answer.records)

            def expected(i: int) -> set[int]:
                return {t for t in stored if first[i] <= t <= window_end}

            def complete(_) -> bool:
                return all(expected(i) <= set(times(inbox)) for i, inbox in enumerate(inboxes))

            assert await inboxes[0].wait(complete, LEASE + 20, 0.2), "\n".join(
                f"burst-{i}: missing {sorted(expected(i) - set(times(inbox)))}"
                for i, inbox in enumerate(inboxes))
            completed_after = time.time() - killed_at
            await asyncio.sleep(2)
            for i, inbox in enumerate(inboxes):
                received = times(inbox)
                dups = {t for t in received if received.count(t) > 1}
                assert len(dups) <= DEPTH, f"burst-{i}: {len(dups)} readings received twice"
                seqs = defaultdict(set)
                for n in inbox.live():
                    for t in n.times:
                        seqs[int(t)].add(publication_seq(n.id))
                assert not {t for t, s in seqs.items() if len(s) > 1}, f"burst-{i}: published twice"
            print(f"burst of {total} notifications; a sent {sent_before_kill} of them before its "
                  f"kill, {left} left; everything received {completed_after:.1f} s after the kill")
            for c in clients[:1]:
                await unsubscribe_everything(c, [UP1])
        assert b.running(), b.tail()
    finally:
        a.stop()
        b.stop()
        for p in proxies.values():
            p.stop()
