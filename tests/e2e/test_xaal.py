"""The xAAL source (issue: home-automation bus as a source), end to end.

Real Prosody, the real component, real xaal-lib 0.9 devices (a power meter, a thermometer and a
lamp, testkit/python/quoalise_testkit/xaal_devices.py) and slixmpp clients, all inside a private network namespace
with only a loopback interface: multicast never leaves it.

`test_xaal_bus` re-runs itself inside that namespace (`unshare --net`, as root) and passes when
the inner run passes; the inner run is the scenario: discovery with descriptions, visibility
restricted to the bus owners, live notifications within a second of an `attributes_change`,
history, forged and replayed datagrams ignored, a silent device going offline, and our own
`alive` decoded by xaal-lib itself.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from quoalise_testkit.commands import history_fields, run_command
from quoalise_testkit.harness import REPO, connected, start_component, start_server
from quoalise_testkit.live import Inbox, Notification
from quoalise_testkit.xaal_bus import (
    SOURCE_ID,
    BusListener,
    DeviceProcess,
    derive_key,
    in_netns,
    loopback_only,
    netns_command,
    write_xaal_ini,
    xaal_source,
)
from quoalise_testkit.xmpp import DOMAIN, expect_error, forms, items

PASSPHRASE = "quoalise-e2e-bus"
SOURCE = f"{SOURCE_ID}@{DOMAIN}"
UP_FORM = "urn:quoalise:0#usage-point"
POWER = "consumption/power/active/instant"
ENERGY = "consumption/energy/active/index"
TEMPERATURE = "temperature/raw"
ALIVE_TIMER = 1  # the devices announce a 2 s timeout
NOTIFY_WITHIN = 1.0
T = 10


def jid(uuid: str) -> str:
    return f"{uuid}@{DOMAIN}"


def urn(uuid: str, series: str) -> str:
    return f"urn:dev:uuid:{uuid}_{series}"


def test_xaal_bus(workspace):
    if in_netns():
        asyncio.run(scenario(workspace))
        return
    assert os.geteuid() == 0, "the xAAL test makes a network namespace: run it as root"
    inner = subprocess.run(
        netns_command([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x",
                       str(Path(__file__)), "-k", "test_xaal_bus"]),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert inner.returncode == 0, (
        f"the scenario failed inside the network namespace (status {inner.returncode}):\n"
        f"{inner.stdout[-12000:]}\n{inner.stderr[-4000:]}"
    )
    assert " passed" in inner.stdout, inner.stdout


async def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    """Polls `predicate` (sync or async) until it returns something truthy; fails after
    `timeout` seconds with `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(interval)


def values(inbox: Inbox, node: str, sender: str, since: float = 0.0) -> list[tuple[float, Notification]]:
    return [
        (r.value, n) for n in inbox.live(since) if n.node == node and n.sender == sender for r in n.records
    ]


async def scenario(workspace) -> None:
    assert loopback_only(), f"not in a private namespace: {socket.if_nameindex()}"
    key = derive_key(PASSPHRASE)
    conf_dir = write_xaal_ini(workspace.mkdir("xaal-conf"), key, ALIVE_TIMER)
    # xaal-lib reads its configuration at import: only now may it be imported.
    os.environ["XAAL_CONF_DIR"] = str(conf_dir)
    from xaal.lib import MessageFactory
    from xaal.lib.messages import MessageType

    listener = BusListener()
    server = start_server("prosody", workspace.mkdir("prosody"))
    comp_dir = workspace.mkdir("component")
    passphrase_file = comp_dir / "xaal-passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n")
    component = devices = None
    try:
        component = start_component(
            server, comp_dir, alice_sees_all=False,
            sources=xaal_source(passphrase_file, ["alice@localhost"], is_alive_interval="30s"),
        )
        component.wait_for_count("xAAL bus joined", 1, 10)

        # xaal-lib decodes our own alive.
        factory = MessageFactory(key)

        def decoded() -> list:
            out = []
            for _, data in list(listener.datagrams):
                try:
                    out.append((data, factory.decode_msg(data)))
                except Exception:
                    pass
            return out

        ours = await wait_for(
            lambda: [m for _, m in decoded() if m.dev_type == "gateway.basic" and m.action == "alive"],
            10, "the component's alive decoded by xaal-lib")
        assert ours[0].msg_type == MessageType.NOTIFY and ours[0].targets == []
        assert ours[0].body == {"timeout": 200}, ours[0].body

        devices = DeviceProcess(conf_dir, workspace.root / "xaal-devices.log")
        pm, thermo, lamp = (devices.uuids[k] for k in ("pm", "thermo", "lamp"))

        async with connected(server, "alice", presence=True) as alice, \
                connected(server, "bob", presence=True) as bob:
            disco = alice.plugin["xep_0030"]

            # Discovery: the three devices, named from their descriptions.
            async def listed():
                got = {j: n for j, _, n in items(await disco.get_items(jid=SOURCE, timeout=T))}
                want = {jid(pm), jid(thermo), jid(lamp)}
                return got if want <= got.keys() and "PM-1" in got[jid(pm)] else None
            names = await wait_for(listed, 15, "the devices listed with their descriptions", 0.3)
            assert names[jid(pm)] == "Quoalise-e2e PM-1 — kitchen meter (http://example.org/pm-1)", names
            assert names[jid(thermo)] == "Quoalise-e2e TH-1 — living room", names
            info = forms(await disco.get_info(jid=jid(pm), timeout=T))[UP_FORM]
            assert info["device-type"] == ["powermeter.basic"], info
            assert info["identifier-authority"] == ["xaal"] and info["identifier-value"] == [pm], info
            assert info["online"] == ["1"], info
            assert sorted(info["series"]) == [ENERGY, POWER], info
            lamp_info = forms(await disco.get_info(jid=jid(lamp), timeout=T))[UP_FORM]
            assert lamp_info["device-type"] == ["lamp.basic"] and lamp_info["series"] == [], lamp_info

            # Only the owners see them.
            assert items(await bob.plugin["xep_0030"].get_items(jid=SOURCE, timeout=T)) == []
            await expect_error(bob.plugin["xep_0030"].get_info(jid=jid(pm), timeout=T), "item-not-found")
            await expect_error(bob.plugin["xep_0060"].subscribe(jid(pm), POWER, timeout=T))

            # Live: every attribute change is notified within a second.
            inbox = Inbox(alice)
            for up, node in ((pm, POWER), (pm, ENERGY), (thermo, TEMPERATURE)):
                await alice.plugin["xep_0060"].subscribe(jid(up), node, timeout=T)
            changes = [("pm", {"power": 1234}, pm, POWER, 1234.0),
                       ("pm", {"energy": 12.5}, pm, ENERGY, 12500.0),
                       ("thermo", {"temperature": 21.5}, thermo, TEMPERATURE, 21.5)]
            for dev, attrs, up, node, expect in changes:
                sent = await asyncio.to_thread(devices.set, dev, **attrs)
                got = await wait_for(lambda: [n for v, n in values(inbox, node, jid(up)) if v == expect],
                                     5, f"notification of {node} = {expect}", 0.01)
                delay = got[0].received - sent
                assert delay < NOTIFY_WITHIN, f"{node} notified {delay:.3f} s after the change"
                record = got[0].records[0]
                assert record.name == urn(up, node), record
                assert abs(record.time - time.time()) < 5, record
            assert {r.unit for n in inbox.live() for r in n.records} == {"W", "Wh", "Cel"}

            # History holds them.
            now = time.time()
            window = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 600)),
                      time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 60)))
            for up, node, expect in ((pm, POWER, 1234.0), (pm, ENERGY, 12500.0), (thermo, TEMPERATURE, 21.5)):
                answer = await run_command(alice, SOURCE, "get_history", history_fields(urn(up, node), *window))
                assert expect in [r.value for r in answer.records], (node, answer.records)
            await expect_error(run_command(bob, SOURCE, "get_history", history_fields(urn(pm, POWER), *window)))

            # A datagram sealed with another key, and a replay of a genuine one, are ignored.
            genuine = [d for d, m in decoded() if str(m.source) == thermo and m.action == "attributes_change"]
            assert genuine, "the thermometer's attributes_change was not seen on the bus"
            replayed = genuine[-1]  # temperature = 21.5
            await asyncio.to_thread(devices.set, "thermo", temperature=22.0)
            await wait_for(lambda: [v for v, _ in values(inbox, TEMPERATURE, jid(thermo)) if v == 22.0],
                           5, "notification of 22.0")
            forger = MessageFactory(derive_key("not-the-bus-passphrase"))
            from xaal.lib import bindings
            from xaal.lib.messages import Message
            forged = Message()
            forged.source = bindings.UUID(thermo)
            forged.dev_type = "thermometer.basic"
            forged.msg_type = MessageType.NOTIFY
            forged.action = "attributes_change"
            forged.body = {"temperature": 99.0}
            forged.targets = []
            forged.timestamp = (int(time.time()), 123456)
            before = len(inbox.live())
            listener.send(forger.encode_msg(forged))
            listener.send(replayed)
            # A later genuine change is the barrier: everything sent before it was handled.
            await asyncio.to_thread(devices.set, "thermo", temperature=23.0)
            await wait_for(lambda: [v for v, _ in values(inbox, TEMPERATURE, jid(thermo)) if v == 23.0],
                           5, "notification of 23.0")
            after = [v for n in inbox.live()[before:] for v in (r.value for r in n.records)]
            assert after == [23.0], f"notifications after the forged and replayed datagrams: {after}"

            # A device that stops announcing goes offline; its usage point and history stay.
            await asyncio.to_thread(devices.stop, "thermo")
            async def offline():
                f = forms(await disco.get_info(jid=jid(thermo), timeout=T))[UP_FORM]
                return f["online"] == ["0"]
            await wait_for(offline, 10, "the stopped thermometer marked offline", 0.3)
            answer = await run_command(alice, SOURCE, "get_history",
                                       history_fields(urn(thermo, TEMPERATURE), *window))
            # Readings are stamped in whole seconds: a later change in the same second replaces
            # an earlier one, so the last value is there whatever the timing.
            assert 23.0 in {r.value for r in answer.records}, answer.records
            pm_info = forms(await disco.get_info(jid=jid(pm), timeout=T))[UP_FORM]
            assert pm_info["online"] == ["1"], "the power meter still announces itself"

            # A restart with another owner list, the power meter gone while the component was
            # down: it is offline (not heard since the restart), Alice's subscriptions to it end
            # at once (she is no longer an owner) and Bob, the new owner, sees it.
            component.stop()
            await asyncio.to_thread(devices.stop, "pm")
            config = component.config.read_text()
            assert 'owners = ["alice@localhost"]' in config, config
            component.config.write_text(
                config.replace('owners = ["alice@localhost"]', 'owners = ["bob@localhost"]'))
            restarted = time.monotonic()
            component.start()
            await asyncio.to_thread(component.wait_established, 2)

            def ended(node: str) -> bool:
                return any(
                    m.get("from") == jid(pm) and m.find(
                        f".//{{http://jabber.org/protocol/pubsub#event}}subscription"
                        f"[@node='{node}'][@subscription='none']") is not None
                    for at, m in inbox.messages if at >= restarted)
            await wait_for(lambda: ended(POWER) and ended(ENERGY), 10,
                           "Alice's subscriptions to the power meter ended", 0.1)
            await expect_error(disco.get_info(jid=jid(pm), timeout=T), "item-not-found")
            pm_info = forms(await bob.plugin["xep_0030"].get_info(jid=jid(pm), timeout=T))[UP_FORM]
            assert pm_info["online"] == ["0"], "not heard since the restart"
            answer = await run_command(bob, SOURCE, "get_history",
                                       history_fields(urn(pm, POWER), *window))
            assert 1234.0 in {r.value for r in answer.records}, "the history stays, for the new owner"
    finally:
        if devices is not None:
            devices.close()
        if component is not None:
            print("--- component log (tail)\n" + component.tail(40))
            component.stop()
        server.stop()
        listener.close()
