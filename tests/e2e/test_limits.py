"""Per-requester limits (`[limits]`, defaults) through real servers: subscriptions one account
holds on one node, and ad-hoc command sessions one account keeps open.

The shared component runs with the default limits: 16 subscriptions per requester on one node,
32 open command sessions per requester. Both tests undo what they did (subscriptions ended,
sessions cancelled), so later tests see a clean component.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from xml.etree import ElementTree as ET

from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatcherId

from quoalise_testkit.commands import LIVE, command_of, send_command
from quoalise_testkit.harness import connected
from quoalise_testkit.live import NS_ERRORS, NS_PUBSUB, subscription_of, subscriptions_of, unsubscribe_everything
from quoalise_testkit.xmpp import SOURCE, UP1, expect_error

T = 10  # iq timeout
PER_NODE = 16  # subscriptions_per_node, default
SESSIONS = 32  # sessions_per_requester, default
PACE = 0.12  # seconds between two of bob's commands: within his rate (see the test)
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

_ids = itertools.count(1)


async def raw_subscribe(client, jid: str) -> ET.Element:
    """Subscribes `jid` to the live node of UP1; returns the answer as XML, read here.

    slixmpp (1.17) cannot read an iq error whose condition is <policy-violation/> (RFC 6120
    §8.3.3.12, missing from its list of stanza error conditions: the reply raises inside slixmpp
    and the request times out), so this request bypasses its iq machinery.
    """
    iq_id = f"limits-{next(_ids)}"
    reply = asyncio.get_running_loop().create_future()
    client.register_handler(
        Callback(
            f"limits reply {iq_id}",
            MatcherId(iq_id),
            lambda stanza: reply.done() or reply.set_result(stanza.xml),
            once=True,
        )
    )
    client.send_raw(
        f"<iq type='set' id='{iq_id}' to='{UP1}'><pubsub xmlns='{NS_PUBSUB}'>"
        f"<subscribe node='{LIVE}' jid='{jid}'/></pubsub></iq>"
    )
    return await asyncio.wait_for(reply, T)


def error_of(reply: ET.Element) -> tuple[str | None, list[str], str]:
    """(type, condition tags, text) of an iq error answer."""
    assert reply.get("type") == "error", ET.tostring(reply, encoding="unicode")
    error = next(c for c in reply if c.tag.endswith("}error"))
    tags = [c.tag for c in error if not c.tag.endswith("}text")]
    text = next((c.text or "" for c in error if c.tag == f"{{{NS_STANZAS}}}text"), "")
    return error.get("type"), tags, text


async def test_subscriptions_per_node(server, component):
    """alice subscribes 20 full JIDs of her own to one live node: 16 are accepted, the others get
    wait/policy-violation + <too-many-subscriptions/>; re-subscribing one stays accepted."""
    async with connected(server, "alice", presence=True) as alice:
        ps = alice.plugin["xep_0060"]
        try:
            # Notifications to resources that are not connected: a server drops headlines to an
            # unavailable full JID (RFC 6121 §8.5.3.2.1) or delivers them to alice's session.
            jids = [f"alice@{server.host}/r{n}" for n in range(20)]
            subids = {}
            for jid in jids[:PER_NODE]:
                iq = await ps.subscribe(UP1, LIVE, subscribee=jid, timeout=T)
                sub = subscription_of(iq)
                assert (sub.get("subscription"), sub.get("jid")) == ("subscribed", jid), sub.attrib
                subids[jid] = sub.get("subid")
            for jid in jids[PER_NODE:]:
                type_, tags, text = error_of(await raw_subscribe(alice, jid))
                assert type_ == "wait", (type_, tags, text)
                assert tags == [f"{{{NS_STANZAS}}}policy-violation", f"{{{NS_ERRORS}}}too-many-subscriptions"], tags
                assert "subscriptions_per_node" in text and LIVE in text, text

            # Re-subscribing a JID already subscribed is no new subscription.
            iq = await ps.subscribe(UP1, LIVE, subscribee=jids[0], timeout=T)
            assert subscription_of(iq).get("subid") == subids[jids[0]]

            iq = await ps.get_subscriptions(UP1, node=LIVE, timeout=T)
            held = {s["jid"]: s["subid"] for s in subscriptions_of(iq)}
            assert held == subids, held
        finally:
            await unsubscribe_everything(alice, [UP1])


async def test_sessions_per_requester(server, component):
    """bob opens 40 multi-stage command sessions from two resources: 32 open (the limit is for
    the account, all its resources together), the rest get wait/resource-constraint; alice
    still opens one."""
    # Commands count history_cost (5) against [limits] requests_per_second (50): one every
    # 0.1 s stays within bob's rate, so what is tested is the session limit alone.
    async with connected(server, "bob", resource="one") as bob1, \
            connected(server, "bob", resource="two") as bob2, \
            connected(server, "alice") as alice:
        opened = {bob1: [], bob2: [], alice: []}
        try:
            for n in range(SESSIONS):
                bob = (bob1, bob2)[n % 2]
                await asyncio.sleep(PACE)
                iq = await send_command(bob, SOURCE, "get_history", timeout=T)
                cmd = command_of(iq)
                assert cmd.get("status") == "executing", cmd.attrib
                opened[bob].append(cmd.get("sessionid"))
            for n in range(40 - SESSIONS):
                bob = (bob1, bob2)[n % 2]
                await asyncio.sleep(PACE)
                error = await expect_error(
                    send_command(bob, SOURCE, "get_history", timeout=T), "resource-constraint"
                )
                assert error.iq["error"]["type"] == "wait", error.iq
                assert "sessions_per_requester" in error.iq["error"]["text"], error.iq

            iq = await send_command(alice, SOURCE, "get_history", timeout=T)
            cmd = command_of(iq)
            assert cmd.get("status") == "executing", cmd.attrib
            opened[alice].append(cmd.get("sessionid"))

            # Ending one of bob's sessions makes room for one, from either resource.
            await asyncio.sleep(PACE)
            await send_command(bob1, SOURCE, "get_history", action="cancel", sessionid=opened[bob1].pop(), timeout=T)
            await asyncio.sleep(PACE)
            iq = await send_command(bob2, SOURCE, "get_history", timeout=T)
            opened[bob2].append(command_of(iq).get("sessionid"))
        finally:
            for client, sessions in opened.items():
                for sessionid in sessions:
                    await asyncio.sleep(PACE)
                    with contextlib.suppress(IqError):
                        await send_command(
                            client, SOURCE, "get_history", action="cancel", sessionid=sessionid, timeout=T
                        )
