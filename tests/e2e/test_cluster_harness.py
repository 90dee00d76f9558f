"""A real two-node ejabberd 23.01 cluster, and how it routes the stanzas of one component domain
served by one component connection per node (testkit/python/quoalise_testkit/cluster.py).

These are the facts deploy/cluster/README.md builds on (ejabberd_router.erl of 23.01,
`balancing_route/4`; ejabberd_router_mnesia.erl, `register_route/5`):

Without `domain_balancing` (the default, and the recommended setup):
- A stanza for the domain goes to a connection on the node that routes it (the node of the
  sender's session), chosen at random per stanza among that node's connections; only when the
  node has none does it go to a connection on another node (at random among all).
- One node accepts several connections for the domain (no `conflict`).
- The result of an iq a component sends to a client comes back to a connection of the *client's*
  node, not necessarily to the component that asked.
- A killed component (kill -9) is out of the routes within milliseconds; the stanzas it had
  received and not answered are lost, with no error to their senders.
- With no connection left, stanzas for the domain bounce at once (here `forbidden`: the test
  server has `s2s_access: none`).

With `domain_balancing: {DOMAIN: {type: source, component_number: 2}}`:
- The domain gets 2 fixed slots, taken by the first 2 connections; a sender (full JID) is
  pinned to a slot by a hash, whatever the node: no local preference.
- A dead connection leaves its slot empty: the stanzas hashed to it vanish (no error, the
  sender times out) until a *new* connection takes the slot; a connection that was already
  there in excess of component_number never gets anything, not even then.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

import pytest

from quoalise_testkit.cluster import EjabberdCluster, RawComponent, RawComponentProcess
from quoalise_testkit.harness import COMPONENT_DOMAIN, HarnessError, IqError, IqTimeout, connected

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def make_cluster(workspace):
    """Factory: a started cluster; stopped at the end of the test, with no process left."""
    started: list[EjabberdCluster] = []

    def make(**kwargs) -> EjabberdCluster:
        cluster = EjabberdCluster(workspace.mkdir("ejabberd-cluster"), **kwargs)
        try:
            cluster.start()
        except HarnessError as e:
            pytest.fail(str(e), pytrace=False)
        print(f"cluster start: {cluster.timings}")
        started.append(cluster)
        return cluster

    yield make
    for cluster in started:
        cluster.stop()
        assert cluster.leftovers() == []


@contextlib.asynccontextmanager
async def sessions_of_alice(sessions: dict):
    """Clients logged in as alice, one per resource, each on its node; {resource: client}."""
    async with contextlib.AsyncExitStack() as stack:
        yield {
            resource: await stack.enter_async_context(connected(node, "alice", resource=resource))
            for resource, node in sessions.items()
        }


async def probe(client, count: int, timeout: float = 3.0) -> collections.Counter:
    """Send `count` iq gets to the component domain at once; how they ended ("result",
    "error:<condition>" or "timeout")."""

    async def one() -> str:
        iq = client.make_iq_get(queryxmlns="urn:quoalise:test:probe", ito=COMPONENT_DOMAIN)
        try:
            await iq.send(timeout=timeout)
            return "result"
        except IqError as e:
            return "error:" + e.iq["error"]["condition"]
        except IqTimeout:
            return "timeout"

    return collections.Counter(await asyncio.gather(*(one() for _ in range(count))))


def senders(component) -> collections.Counter:
    """Full JIDs of the iq gets/sets a component received, with their counts."""
    return collections.Counter(s.from_ for s in component.stanzas("iq") if s.type in ("get", "set"))


async def test_default_routing_prefers_the_local_connection_and_fails_over(make_cluster, workspace):
    cluster = make_cluster()
    a, b = cluster.a, cluster.b
    assert cluster.list_cluster(a) == cluster.list_cluster(b) == [a.node, b.node]
    assert (a.component_port, a.c2s_port) != (b.component_port, b.c2s_port)
    secret = cluster.component_secret
    # On node A, a component that records but never answers, in its own process (to kill -9).
    comp_a = RawComponentProcess(workspace.mkdir("raw"), a.component_port, secret, name="comp-a",
                                 answer_iqs=False).start()
    comp_b = RawComponent(b.component_port, secret, name="comp-b").connect()
    extra = []
    try:
        async with connected(a, "alice", resource="on-a") as alice, \
                connected(b, "bob", resource="on-b") as bob:
            # Local preference: alice (node A) reaches comp-a only, bob (node B) comp-b only.
            pending = asyncio.create_task(probe(alice, 10, timeout=2.5))
            assert await probe(bob, 10) == {"result": 10}
            await asyncio.to_thread(comp_a.wait_for, 10)
            assert senders(comp_b) == {"bob@localhost/on-b": 10}
            assert collections.Counter(s.from_ for s in comp_a.stanzas()) == {"alice@localhost/on-a": 10}

            # An iq from comp-b to alice: her answer is routed on node A, to comp-a.
            comp_b.send(f"<iq type='get' id='ask-alice' from='{COMPONENT_DOMAIN}' "
                        "to='alice@localhost/on-a'><ping xmlns='urn:xmpp:ping'/></iq>")
            answer = await asyncio.to_thread(comp_a.wait_for_id, "ask-alice", 5.0)
            assert (answer.type, answer.from_) == ("result", "alice@localhost/on-a")
            assert [s.id for s in comp_b.stanzas("iq") if s.type == "result"] == []

            # kill -9 of comp-a: the 10 iqs it held are lost without an error to alice...
            comp_a.kill9()
            assert await pending == {"timeout": 10}
            # ...and alice's next iqs go to comp-b on node B.
            assert await probe(alice, 10) == {"result": 10}
            assert senders(comp_b)["alice@localhost/on-a"] == 10

            # One node takes a second connection for the domain: it shares node B's stanzas.
            extra.append(RawComponent(b.component_port, secret, name="comp-b2").connect())
            await asyncio.sleep(0.2)
            before = senders(comp_b)["bob@localhost/on-b"]
            assert await probe(bob, 40) == {"result": 40}
            got_b = senders(comp_b)["bob@localhost/on-b"] - before
            got_b2 = senders(extra[0])["bob@localhost/on-b"]
            assert got_b + got_b2 == 40 and got_b > 0 and got_b2 > 0, (got_b, got_b2)

            # No connection left: the stanzas bounce at once.
            comp_b.close()
            extra[0].close()
            await asyncio.sleep(0.2)
            assert await probe(bob, 3) == {"error:forbidden": 3}
    finally:
        comp_a.kill9()
        for comp in [comp_b, *extra]:
            comp.close()


async def test_domain_balancing_pins_senders_to_slots_and_a_dead_slot_swallows(make_cluster, workspace):
    cluster = make_cluster(domain_balancing={"type": "source", "component_number": 2})
    a, b = cluster.a, cluster.b
    secret = cluster.component_secret
    comp_a = RawComponentProcess(workspace.mkdir("raw"), a.component_port, secret, name="comp-a").start()
    comp_b = RawComponent(b.component_port, secret, name="comp-b").connect()
    # A third connection: accepted, but both slots are taken.
    spare = RawComponent(a.component_port, secret, name="spare").connect()
    late = None
    try:
        # Resources whose hash lands on each slot (fixed: erlang:phash2 of the full JID).
        sessions = {"rA0": a, "rA1": a, "rB0": b, "rB1": b}
        async with sessions_of_alice(sessions) as clients:
            for client in clients.values():
                assert await probe(client, 4) == {"result": 4}
            pinned = {}
            for resource in sessions:
                jid = f"alice@localhost/{resource}"
                on_a = collections.Counter(s.from_ for s in comp_a.stanzas())[jid]
                on_b = senders(comp_b)[jid]
                # Every iq of one session went to one component.
                assert sorted((on_a, on_b)) == [0, 4], (resource, on_a, on_b)
                pinned[resource] = "a" if on_a else "b"
            # The hash, not the node, decides: node A's rA1 goes to node B's component and
            # node B's rB0 to node A's.
            assert pinned == {"rA0": "a", "rA1": "b", "rB0": "a", "rB1": "b"}
            assert spare.stanzas() == []

            # kill -9 of comp-a: its slot stays, empty. Its senders time out (no error), the
            # spare connection gets nothing; comp-b's senders are still answered.
            comp_a.kill9()
            await asyncio.sleep(0.2)
            assert await probe(clients["rA0"], 3, timeout=2.0) == {"timeout": 3}
            assert await probe(clients["rB0"], 3, timeout=2.0) == {"timeout": 3}
            assert await probe(clients["rA1"], 3) == {"result": 3}
            assert spare.stanzas() == []

            # A new connection takes the empty slot: the pinned senders are served again.
            late = RawComponent(b.component_port, secret, name="late").connect()
            await asyncio.sleep(0.2)
            assert await probe(clients["rA0"], 3) == {"result": 3}
            assert senders(late) == {"alice@localhost/rA0": 3}
    finally:
        comp_a.kill9()
        for comp in [comp_b, spare, late]:
            if comp is not None:
                comp.close()
