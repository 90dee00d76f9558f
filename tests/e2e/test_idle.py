"""The link survives silence: tokio-xmpp alone drops a session after 60 s without traffic."""

import asyncio

from quoalise_testkit.harness import ESTABLISHED, connected
from quoalise_testkit.xmpp import DOMAIN, SOURCE, items

IDLE_SECONDS = 70


async def test_idle_70s(server, component):
    # One long wait per server; the component's keepalive is the only traffic meanwhile.
    await asyncio.sleep(IDLE_SECONDS)
    assert component.running(), component.tail()
    async with connected(server, "alice") as alice:
        await alice.plugin["xep_0199"].send_ping(DOMAIN, timeout=10)
        iq = await alice.plugin["xep_0030"].get_items(jid=SOURCE, timeout=10)
        assert len(items(iq)) == 3
    assert component.count(ESTABLISHED) == 1, component.tail()
