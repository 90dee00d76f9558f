"""Malformed input from a user is answered (or dropped) and never costs the session."""

import asyncio

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatcherId

from quoalise_testkit.harness import ESTABLISHED, connected
from quoalise_testkit.xmpp import DOMAIN

RAW = {
    "iq-without-child": ("<iq type='get' id='x1' to='quoalise.localhost'/>", "x1"),
    "message-bogus-type": (
        "<message type='bogus' to='quoalise.localhost'><body>x</body></message>",
        None,
    ),
    "empty-command": (
        "<iq type='set' id='x2' to='quoalise.localhost'>"
        "<command xmlns='http://jabber.org/protocol/commands'/></iq>",
        "x2",
    ),
}


async def send_raw_and_wait(client, data: str, reply_id: str | None, timeout: float = 10.0):
    """Sends deliberately malformed XML; returns the reply stanza carrying `reply_id`."""
    if reply_id is None:
        client.send_raw(data)
        await asyncio.sleep(1.0)
        return None
    loop = asyncio.get_running_loop()
    reply = loop.create_future()
    client.register_handler(
        Callback(
            f"raw reply {reply_id}",
            MatcherId(reply_id),
            lambda stanza: reply.done() or reply.set_result(stanza),
            once=True,
        )
    )
    client.send_raw(data)
    return await asyncio.wait_for(reply, timeout)


@pytest.mark.parametrize("case", list(RAW))
async def test_malformed_input_keeps_session(server, component, case):
    data, reply_id = RAW[case]
    async with connected(server, "bob") as bob:
        reply = await send_raw_and_wait(bob, data, reply_id)
        if reply_id is not None:
            assert reply["type"] == "error", f"expected an error reply, got {reply}"
            if case == "iq-without-child":
                # From the component on ejabberd; Prosody answers this one itself, before routing.
                assert reply["error"]["condition"] == "bad-request", reply
    assert component.running(), component.tail()
    async with connected(server, "alice") as alice:
        await alice.plugin["xep_0199"].send_ping(DOMAIN, timeout=10)
    assert component.count(ESTABLISHED) == 1, component.tail()
