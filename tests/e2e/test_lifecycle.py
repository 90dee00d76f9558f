"""The component across server restarts, a second instance, and a wrong secret."""

import asyncio
import re
import time

import pytest

from quoalise_testkit.harness import ESTABLISHED, HarnessError, connected, wait_until
from quoalise_testkit.xmpp import DOMAIN, SOURCE, items


async def disco_works(server) -> bool:
    try:
        async with connected(server, "alice", timeout=5) as alice:
            iq = await alice.plugin["xep_0030"].get_items(jid=SOURCE, timeout=5)
            return len(items(iq)) == 3
    except Exception:
        return False


@pytest.mark.parametrize("kind", ["prosody", "ejabberd"])
async def test_server_restart(fresh_server, new_component, kind):
    server = fresh_server(kind)
    component = new_component(server)
    assert await disco_works(server)

    server.stop()
    server.start()
    started = time.monotonic()
    deadline = started + 20
    ok = False
    while time.monotonic() < deadline:
        if component.count(ESTABLISHED) >= 2 and await disco_works(server):
            ok = True
            break
        await asyncio.sleep(0.5)
    assert ok, f"no new session within 20 s of the restart\n{component.tail()}"
    assert component.running()
    assert component.count(ESTABLISHED) == 2, component.tail()


@pytest.mark.servers("prosody")
async def test_second_component_gets_conflict(server, component, new_component):
    second = new_component(server, wait=False)
    try:
        second.wait_for_count("conflict", 1, timeout=15)
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)
    async with connected(server, "alice") as alice:
        await alice.plugin["xep_0199"].send_ping(DOMAIN, timeout=10)
    assert second.count(ESTABLISHED) == 0, second.tail()
    assert component.count(ESTABLISHED) == 1, component.tail()


AUTH_ERROR = re.compile(r"secret|not-authorized|authenticat", re.IGNORECASE)


async def test_wrong_secret_is_reported_and_retried(server, component, new_component):
    bad = new_component(server, wait=False, secret="not-the-secret")

    def refusals() -> int:
        return sum(
            1
            for line in bad.log().splitlines()
            if AUTH_ERROR.search(line) and re.search(r"\b(ERROR|WARN)\b", line)
        )

    assert wait_until(lambda: refusals() >= 2 or not bad.running(), timeout=20), bad.tail()
    assert bad.running(), f"the component exited on a wrong secret\n{bad.tail()}"
    assert refusals() >= 2, bad.tail()
    assert bad.count(ESTABLISHED) == 0, bad.tail()
    # The good component is unaffected.
    async with connected(server, "alice") as alice:
        await alice.plugin["xep_0199"].send_ping(DOMAIN, timeout=10)
